// The floor: a minimal unix-socket server that echoes length-prefixed frames (4-byte big-endian
// length + body). It walks the length prefixes of each chunk and writes every complete frame of the
// chunk back in one write; a frame split across chunks is kept until it is whole. No decoding.
import net from 'node:net';
import { exitWithParent, need, ready } from './common.mjs';

const path = need('BENCH_SOCKET');
const connections = new Set();
const server = net.createServer((sock) => {
  let rest = null;
  sock.on('data', (chunk) => {
    let buf = rest === null ? chunk : Buffer.concat([rest, chunk]);
    rest = null;
    let off = 0;
    while (buf.length - off >= 4) {
      const end = off + 4 + buf.readUInt32BE(off);
      if (end > buf.length) break;
      off = end;
    }
    if (off > 0) sock.write(off === buf.length ? buf : buf.subarray(0, off));
    if (off < buf.length) rest = Buffer.from(buf.subarray(off));
  });
  sock.on('error', () => {});
});
server.listen(path, () => ready(path));
exitWithParent(() => new Promise((resolve) => {
  server.close(() => process.exit(0));
  for (const s of connections) s.destroy();
  resolve();
}));
server.on('connection', (s) => {
  connections.add(s);
  s.on('close', () => connections.delete(s));
});
