/**
 * The health part: probes of an instance at the levels of its check (process alive, socket
 * accepts, HTTP 2xx, command exits 0). Deciding when an instance is ready or unhealthy from a
 * series of results is the reconciler's job; this part only runs one probe.
 */
export { probe, probeHttpThen, resolveCheckPort, closeProbeConnections, type ProbeOptions } from './probes.js';
export type { ProbeResult, ProbeTarget } from './types.js';
