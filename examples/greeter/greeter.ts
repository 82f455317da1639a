// The greeter cell: a few typed handlers. `serve` listens on the socket the supervisor hands it
// (CELL_SOCKET) and signals ready; `cell down` drains it through the shutdown op.
import { serve } from 'cellmesh/sdk';
import { Greeter } from './greeter-cell.js';

const instance = Number(process.env.CELL_INSTANCE ?? 0);

await serve(Greeter, {
  greet: async ({ name }) => ({ greeting: `Hello, ${name}!`, instance }),
});
console.log(`greeter.${instance} serving on ${process.env.CELL_SOCKET}`);
