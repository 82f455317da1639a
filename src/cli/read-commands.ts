import type { ApiClient, CellView, InstanceView, StatusView } from '../api/index.js';
import { renderTable, formatAge, printable } from './table.js';

/**
 * `cell status` and `cell ps`: the read commands people run most, kept free of commander so that
 * bin/cell.js can run them without loading the rest of the CLI (see quick.ts).
 */

export const STATE_MARK: Record<string, string> = { ready: '●', launching: '◐', paused: '⏸', backoff: '↻', failed: '✗', draining: '◌', stopped: '○', waiting: '…' };

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export async function runStatus(api: ApiClient, opts: { verbose?: boolean; json?: boolean }): Promise<void> {
  const status = await api.get<StatusView>(`/v1/status${opts.verbose ? '?verbose=1' : ''}`);
  if (opts.json) return printJson(status);
  const d = status.daemon;
  process.stdout.write(`daemon pid ${d.pid}, cell ${d.version}, up ${d.uptime}s${d.gateway ? `, gateway ${d.gateway}` : ''}${d.manifest ? `\nmanifest ${d.manifest}` : ''}\n\n`);
  const rows = status.cells.map((c: CellView) => [
    c.name,
    c.kind,
    c.completed ? '✓ completed' : `${STATE_MARK[c.state] ?? ' '} ${c.state}`,
    `${c.ready}/${c.instances}`,
    c.pids.length ? c.pids.join(',') : '-',
    c.version.slice(0, 12) || '-',
    c.outdated ? '⚠ Update Available' : '✓ Latest',
    c.restarts,
    // Ready (still routed) but failing its check: said, or the table would read all is well.
    [c.failing ? `${c.failing} failing ${c.failing === 1 ? 'its' : 'their'} check` : '', c.reason ?? ''].filter(Boolean).join('; '),
  ]);
  process.stdout.write(renderTable(['CELL', 'KIND', 'STATE', 'READY', 'PID', 'VERSION', 'OUTDATED', 'RESTARTS', 'REASON'], rows) + '\n');
  if (opts.verbose) {
    for (const c of status.cells) {
      for (const i of c.instance_list ?? []) {
        process.stdout.write(printable(`  ${c.name}.${i.instance}  pid ${i.pid ?? '-'}  port ${i.port ?? '-'}  ${i.state}  health ${i.health}${i.health_detail ? ` (${i.health_detail})` : ''}  restarts ${i.restarts}  since ${formatAge(i.started_at)}${i.reason ? `  ${i.reason}` : ''}`) + '\n');
      }
    }
  }
}

export async function runPs(api: ApiClient, opts: { json?: boolean }): Promise<void> {
  const list = await api.get<InstanceView[]>('/v1/ps');
  if (opts.json) {
    return printJson(list.map((i) => ({ cell: i.cell, instance: i.instance, pid: i.pid, port: i.port, state: i.state, health: i.health, restarts: i.restarts, version: i.version, started_at: i.started_at })));
  }
  const rows = list.map((i) => [`${i.cell}.${i.instance}`, i.pid ?? '-', (i.pid !== null && i.port) || '-', i.completed ? 'stopped (completed)' : i.state, i.health, i.restarts, i.version.slice(0, 12), i.pid ? formatAge(i.started_at) : '-']);
  process.stdout.write(renderTable(['INSTANCE', 'PID', 'PORT', 'STATE', 'HEALTH', 'RESTARTS', 'VERSION', 'UPTIME'], rows) + '\n');
}
