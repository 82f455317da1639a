// @grpc/grpc-js server on a unix socket (unix:///path), insecure credentials (no TLS: the cell
// and raw peers have none either), one unary method that answers with its request.
import { EchoService, grpc } from './grpc-def.mjs';
import { exitWithParent, need, ready } from './common.mjs';

const path = need('BENCH_SOCKET');
const server = new grpc.Server();
server.addService(EchoService.service, {
  Echo: (call, callback) => callback(null, call.request),
});
server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) {
    process.stderr.write(`grpc bind failed: ${error.message}\n`);
    process.exit(1);
  }
  ready(path);
});
exitWithParent(() => new Promise(() => {
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => { server.forceShutdown(); process.exit(0); }, 1000).unref();
}));
