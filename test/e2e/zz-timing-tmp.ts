import { MeshHarness } from '/work/main/test/e2e/harness.ts';
const MESH = `
cells:
  db:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  api:
    run: node fixtures/service.mjs
    depends_on: [db]
    instances: 2
    health: { http: { path: / }, interval: 200ms }
`;
let t = Date.now();
const lap = (w: string) => { console.log(w, Date.now() - t); t = Date.now(); };
{
  await using mesh = new MeshHarness(MESH);
  lap('new');
  await mesh.ok(['up']); lap('up');
  await mesh.ok(['status']); lap('status');
  const f = mesh.writeManifest('cells: {}\n', 'x.yaml');
  await mesh.cell(['-f', f, 'up']); lap('bad up');
  await Promise.all([1,2,3].map(() => mesh.cell(['-f', f, 'up']))); lap('3 bad up');
  await mesh.cell(['down']); lap('down');
}
lap('dispose');
