// The greeter's contract, shared by the cell and its clients: a wrong payload fails to compile.
import { defineCell, z } from 'cellmesh/sdk';

export const Greeter = defineCell('greeter', {
  greet: {
    input: z.object({ name: z.string().min(1) }),
    output: z.object({ greeting: z.string(), instance: z.number() }),
  },
});
