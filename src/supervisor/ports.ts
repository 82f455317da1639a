import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Where instance ports come from: a range below the kernel's ephemeral ports (Nomad's
 * `min_dynamic_port`/`max_dynamic_port` idea, with its default 20000-32000).
 *
 * Why not `listen(0)`: that hands out an ephemeral port, the same pool outgoing connections take
 * their local port from. Between the daemon picking a port and the cell listening on it (seconds,
 * in a cold start of 100 cells) any connection on the machine (the daemon's own health checks
 * included) may take it, and the cell then fails with EADDRINUSE, or a check to it connects to
 * itself.
 */
export const DYNAMIC_PORTS = { min: 20_000, max: 32_000 } as const;

/** The kernel's ephemeral range, or Linux's default when it cannot be read. */
export function ephemeralPortRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): { min: number; max: number } {
  try {
    const [min, max] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(min) && Number.isInteger(max) && min > 0 && max >= min) return { min, max };
  } catch {
    // Not Linux, or no /proc: assume the default.
  }
  return { min: 32_768, max: 60_999 };
}

/**
 * The dynamic range with the ephemeral one cut out; null when too little is left (a machine
 * whose ephemeral range covers it), and ports then come from `listen(0)`.
 */
export function dynamicPortRange(ephemeral = ephemeralPortRange()): { min: number; max: number } | null {
  const { min } = DYNAMIC_PORTS;
  const max = ephemeral.min > min && ephemeral.min <= DYNAMIC_PORTS.max ? ephemeral.min - 1 : DYNAMIC_PORTS.max;
  const overlaps = ephemeral.min <= max && ephemeral.max >= min;
  return !overlaps && max - min >= 1000 ? { min, max } : null;
}

/** Whether 127.0.0.1:`port` can be listened on now; resolves to the port the system gave for 0. */
function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(null));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * Hands out free ports from the dynamic range, round-robin from a random start (so that a port a
 * stopped instance just released is not the next one handed out), skipping ports in `inUse` and
 * ports something else listens on.
 */
export class PortAllocator {
  private next: number;

  constructor(
    private readonly range = dynamicPortRange(),
    random = Math.random,
  ) {
    this.next = range ? range.min + Math.floor(random() * (range.max - range.min + 1)) : 0;
  }

  /**
   * The next port of the range not in `inUse`, without checking that nothing else listens on it
   * (null when there is no range): a start takes one at once, so that `cell ps` shows it, and
   * checks it with `isFree` just before its spawn, which may be seconds later in a burst.
   */
  candidate(inUse: ReadonlySet<number>): number | null {
    const range = this.range;
    if (!range) return null;
    for (let tried = 0; tried <= range.max - range.min; tried++) {
      const port = this.next;
      this.next = port === range.max ? range.min : port + 1;
      if (!inUse.has(port)) return port;
    }
    return null;
  }

  /** Whether 127.0.0.1:`port` can be listened on now. */
  async isFree(port: number): Promise<boolean> {
    return (await tryListen(port)) !== null;
  }

  async allocate(inUse: ReadonlySet<number>): Promise<number> {
    const range = this.range;
    if (!range) {
      for (;;) {
        const port = await tryListen(0);
        if (port === null) throw new Error('no free port: listen(0) failed');
        if (!inUse.has(port)) return port;
      }
    }
    // Each candidate call moves the walk past at least one port, so `size` calls cover the range.
    const size = range.max - range.min + 1;
    for (let tried = 0; tried < size; tried++) {
      const port = this.candidate(inUse);
      if (port === null) break;
      if (await this.isFree(port)) return port;
    }
    throw new Error(`no free port in ${range.min}-${range.max}`);
  }
}
