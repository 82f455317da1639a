// cell server: serve() from the SDK as users run it (cellmesh/sdk = dist/, plain node), on a unix
// socket with a secret. The handler returns its (validated) input; the SDK checks input and output
// against the schemas, as it does for every call.
import { serve } from 'cellmesh/sdk';
import { EchoCell } from './cell-def.mjs';
import { exitWithParent, need, ready } from './common.mjs';

const socket = need('BENCH_SOCKET');
const secret = need('BENCH_SECRET');
// SIGTERM: the SDK drains and exits (exitOnShutdown); our own hook covers the parent going away.
const server = await serve(EchoCell, { echo: (input) => input }, { socket, secret, exitOnShutdown: true, handleSignals: true });
exitWithParent(async () => {
  await server.close();
  process.exit(0);
});
// serve() registered its SIGTERM handler first, so it drains; ours (in exitWithParent) only arms the 3 s backstop.
ready(socket);
