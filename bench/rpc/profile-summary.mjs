// Summarizes V8 .cpuprofile files (node --cpu-prof; bench/rpc.ts --cpu-prof DIR): self time by
// function and by file/package, and inclusive time of the functions that matter.
//
//   node bench/rpc/profile-summary.mjs FILE.cpuprofile [--top 30] [--inclusive PATTERN]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const files = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
const top = Number(args[args.indexOf('--top') + 1] ?? 30) || 30;
const inclusivePattern = args.includes('--inclusive') ? new RegExp(args[args.indexOf('--inclusive') + 1]) : null;

function where(url) {
  if (!url) return '(native/vm)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (u.startsWith('node:')) return u;
  const m = /\/(dist|src|bench)\/(.*)$/.exec(u);
  return m ? `${m[1]}/${m[2]}` : u;
}

for (const file of files) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const total = prof.timeDeltas.reduce((a, b) => a + b, 0);
  // Each sample's delta goes to its node (self) and, once per distinct function, to its ancestors (inclusive).
  const selfById = new Map();
  for (let i = 0; i < prof.samples.length; i++) selfById.set(prof.samples[i], (selfById.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  const key = (n) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const byFile = new Map();
  const inclusive = new Map();
  for (const [id, t] of selfById) {
    const n = byId.get(id);
    self.set(key(n), (self.get(key(n)) ?? 0) + t);
    const f = n.callFrame.url ? where(n.callFrame.url) : n.callFrame.functionName;
    byFile.set(f, (byFile.get(f) ?? 0) + t);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + t);
    }
  }
  const idle = [...self].filter(([k]) => /^\((idle|program|garbage collector)\)/.test(k));
  const pct = (t) => `${((t / total) * 100).toFixed(1).padStart(5)} %`;
  console.log(`\n== ${file}: ${(total / 1e6).toFixed(2)} s sampled; ${idle.map(([k, t]) => `${k.split(' ')[0]} ${pct(t).trim()}`).join(', ')}`);
  console.log('-- self time by file / package');
  for (const [f, t] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${pct(t)}  ${f}`);
  console.log(`-- self time, top ${top} functions`);
  for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
  if (inclusivePattern) {
    console.log(`-- inclusive time of functions matching ${inclusivePattern}`);
    for (const [k, t] of [...inclusive].filter(([k]) => inclusivePattern.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
  }
}
