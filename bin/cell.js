#!/usr/bin/env node
// The published entry point: runs the compiled CLI (npm install builds dist/ through `prepare`).
// `cell status` and `cell ps` take a short path that skips loading the full command parser.
// Output piped into `head` and closed early is not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
const { runQuick } = await import('../dist/cli/quick.js');
if (!(await runQuick(process.argv.slice(2)))) await import('../dist/cli/main.js');
