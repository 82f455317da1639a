/**
 * The Cell SDK (`cellmesh/sdk`): what a cell's own code imports. Typed RPC over unix sockets.
 *
 * ```ts
 * import { defineCell, serve, connect, z } from 'cellmesh/sdk';
 * export const Greeter = defineCell('greeter', {
 *   greet: { input: z.object({ name: z.string() }), output: z.object({ greeting: z.string() }) },
 * });
 * await serve(Greeter, { greet: async ({ name }) => ({ greeting: `Hello, ${name}!` }) });
 * const greeter = await connect(Greeter);
 * await greeter.greet({ name: 'World' });
 * ```
 *
 * It imports only zod, msgpackr and node built-ins: never the daemon.
 */
export { z } from 'zod';
export { defineCell, type CallContext, type CallOptions, type CellDefinition, type Handler, type Handlers, type MethodMap, type MethodSpec, type RemoteMethod } from './define.js';
export { serve, type CellServer, type ServeOptions } from './server.js';
export { connect, type CellClient, type ClientCore, type ConnectOptions, type UntypedCellClient, type UntypedMethod } from './client.js';
export { fetchSchema, pingCell, shutdownCell, type AdminOptions, type CellSchema } from './admin.js';
export {
  AbortError,
  CallTimeoutError,
  CellRpcError,
  ConnectionClosedError,
  ConnectionLostError,
  HandshakeError,
  ProtocolError,
  RemoteError,
  type CellErrorJSON,
  type CellRpcErrorOptions,
} from './errors.js';
export { DEFAULT_MAX_FRAME_BYTES, ErrorCode, Op, PROTOCOL_VERSION } from './protocol.js';
export { DiscoveryError, type ResolvedEndpoints } from './discovery.js';
