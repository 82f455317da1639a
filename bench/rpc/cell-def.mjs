// The cell both sides of the cell phase import: one method, `echo`, small object in and out.
import { defineCell, z } from 'cellmesh/sdk';

const Message = z.object({ n: z.number(), s: z.string() });
export const EchoCell = defineCell('rpc-bench', { echo: { input: Message, output: Message } });
