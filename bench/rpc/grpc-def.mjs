// Loads bench/rpc/echo.proto with @grpc/proto-loader (shared by the gRPC server and client).
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('./echo.proto', import.meta.url));
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
export const EchoService = grpc.loadPackageDefinition(definition).bench.Echo;
export { grpc };
