// Calls the greeter by name: discovery finds its instances, calls spread across them.
import { connect } from 'cellmesh/sdk';
import { Greeter } from './greeter-cell.js';

const name = process.argv[2] ?? 'World';
const calls = Number(process.argv[3] ?? 9);

const greeter = await connect(Greeter);
const byInstance = new Map<number, number>();
for (let i = 0; i < calls; i++) {
  const { greeting, instance } = await greeter.greet({ name });
  byInstance.set(instance, (byInstance.get(instance) ?? 0) + 1);
  if (i === 0) console.log(greeting);
}
console.log(`${calls} calls, by instance: ${[...byInstance].sort().map(([i, n]) => `greeter.${i}=${n}`).join(' ')}`);
await greeter.close();
