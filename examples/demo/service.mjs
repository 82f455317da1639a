// A small HTTP service for the demo mesh: answers on $PORT, reports who it is, and calls the
// cells it depends on through the gateway when asked to (/chain).
import { createServer } from 'node:http';

const name = process.env.CELL_NAME ?? 'service';
const instance = process.env.CELL_INSTANCE ?? '0';
let requests = 0;

const server = createServer((req, res) => {
  requests++;
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ cell: name, instance: Number(instance), pid: process.pid, requests, path: req.url }) + '\n');
});

server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`${name}.${instance} listening on ${process.env.PORT}`);
});

// Graceful stop: finish requests in flight, then exit.
process.on('SIGTERM', () => {
  console.log(`${name}.${instance} stopping`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
