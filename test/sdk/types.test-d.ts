/**
 * Type expectations of the SDK, checked by `tsc` (npm run typecheck; types.test.ts runs it).
 * Every `@ts-expect-error` line must fail to compile: if one compiles, tsc reports the unused directive.
 * Nothing here runs.
 */
import { type CellClient, type UntypedCellClient, connect, defineCell, serve, z } from '../../src/sdk/index.js';

const Greeter = defineCell('greeter', {
  greet: { input: z.object({ name: z.string() }), output: z.object({ greeting: z.string() }) },
  count: { input: z.object({ n: z.number().default(1) }), output: z.number().transform((n) => String(n)) },
});

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

export async function clientTypes(): Promise<void> {
  const c = await connect(Greeter);
  const r = await c.greet({ name: 'World' }, { timeoutMs: 1000, signal: AbortSignal.timeout(10) });
  expectType<Equal<typeof r, { greeting: string }>>();
  // Input is the schema's input (defaults optional), output the schema's output (after transforms).
  const counted = await c.count({});
  expectType<Equal<typeof counted, string>>();
  expectType<Equal<typeof c, CellClient<typeof Greeter>>>();
  expectType<Equal<Awaited<ReturnType<typeof c.call<'greet'>>>, { greeting: string }>>();

  // @ts-expect-error a wrong payload type
  await c.greet({ name: 1 });
  // @ts-expect-error a missing field
  await c.greet({});
  // @ts-expect-error no payload at all
  await c.greet();
  // @ts-expect-error a method the cell does not have
  await c.farewell({ name: 'x' });
  // @ts-expect-error by name, too
  await c.call('farewell', { name: 'x' });
  // @ts-expect-error call() checks the payload against the method
  await c.call('greet', { name: 2 });
  // @ts-expect-error the result is typed: no such field
  void r.salutation;
  // @ts-expect-error an option that does not exist
  await c.greet({ name: 'x' }, { retries: 3 });

  const u = await connect('greeter');
  expectType<Equal<typeof u, UntypedCellClient>>();
  const anything = await u.greet({ name: 1 });
  expectType<Equal<typeof anything, unknown>>();
  const byName = await u.call('whatever', 42);
  expectType<Equal<typeof byName, unknown>>();
  await u.close();
  await c.close();
}

export async function serverTypes(): Promise<void> {
  await serve(Greeter, {
    greet: async ({ name }, ctx) => {
      expectType<Equal<typeof name, string>>();
      expectType<Equal<typeof ctx.signal, AbortSignal>>();
      return { greeting: `Hello, ${name}!` };
    },
    // The handler sees the parsed input (defaults applied) and returns the output schema's input.
    count: ({ n }) => {
      expectType<Equal<typeof n, number>>();
      return n;
    },
  });

  await serve(Greeter, {
    // @ts-expect-error a wrong handler return type
    greet: () => ({ greeting: 42 }),
    count: ({ n }) => n,
  });

  await serve(Greeter, {
    greet: ({ name }) => ({ greeting: name }),
    // @ts-expect-error a handler returning the wrong type asynchronously
    count: async () => 'not a number',
  });

  // @ts-expect-error a missing handler
  await serve(Greeter, { greet: ({ name }) => ({ greeting: name }) });

  await serve(Greeter, {
    greet: ({ name }) => ({ greeting: name }),
    count: ({ n }) => n,
    // @ts-expect-error a handler for a method the cell does not have
    farewell: () => ({}),
  });

  // @ts-expect-error an unknown option
  await serve(Greeter, { greet: ({ name }) => ({ greeting: name }), count: ({ n }) => n }, { port: 80 });
}
