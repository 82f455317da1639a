// NATS responder: one connection to the local nats-server, subscribed to `bench.echo`; each request
// is decoded from JSON and answered with the JSON of the decoded value (the npm `nats` client).
import { connect, JSONCodec } from 'nats';
import { exitWithParent, need, ready } from './common.mjs';

const servers = need('BENCH_NATS');
const jc = JSONCodec();
const nc = await connect({ servers, name: 'rpc-bench-responder' });
nc.subscribe('bench.echo', {
  callback: (error, msg) => {
    if (error) return;
    msg.respond(jc.encode(jc.decode(msg.data)));
  },
});
await nc.flush();
exitWithParent(async () => {
  await nc.close();
  process.exit(0);
});
ready(servers);
