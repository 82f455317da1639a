'use strict';
/**
 * A warm spare (see warm-node.ts): a node process that has paid node's own boot ahead of need
 * and waits on fd 3 for the program it is to become. It is CommonJS so that a CommonJS program
 * finds the loader as a cold `node app.js` leaves it (no ESM loader of ours in between).
 *
 * Protocol on fd 3, one line each: the spare says `ready`; the daemon sends the job as JSON; the
 * spare answers `ok` and runs the program, or `refused <why>` and exits 70. End of file before
 * a job (the daemon is gone or let the spare go) ends the spare: a spare nobody can hand work to
 * must not outlive its daemon.
 *
 * Plain JavaScript, not TypeScript: the same file runs from src (the tests) and from dist (the
 * build copies it), and a spare must not need a compiler to boot.
 */
const { closeSync, openSync, read, writeSync } = require('node:fs');
const { resolve } = require('node:path');
const Module = require('node:module');
/**
 * The channel is read and written as a plain descriptor: a net.Socket on it would leave the
 * program a handle and an extra descriptor of ours (node reserves one for it).
 */
const CHANNEL = 3;
const chunk = Buffer.alloc(64 * 1024);
let pending = '';
writeSync(CHANNEL, 'ready\n');
readJob();
function readJob() {
  read(CHANNEL, chunk, 0, chunk.length, null, (err, bytes) => {
    if (err || bytes === 0) process.exit(0);
    pending += chunk.toString('utf8', 0, bytes);
    const newline = pending.indexOf('\n');
    if (newline < 0) return readJob();
    try {
      become(JSON.parse(pending.slice(0, newline)));
    } catch (err) {
      answer(`refused ${String(err.message).replace(/\s+/g, ' ')}`);
      process.exit(70);
    }
    answer('ok');
    // The program must not find the spare: not as its main module, not in the module cache.
    delete require.cache[__filename];
    process.mainModule = undefined;
    Module.runMain(process.argv[1]);
  });
}
/** The last word on the channel, which is then closed: the program's descriptors are a cold start's. */
function answer(line) {
  try {
    writeSync(CHANNEL, `${line}\n`);
  } catch {
    // The daemon is gone: the program runs on regardless.
  }
  closeSync(CHANNEL);
}
/** Makes this process what `node <script> <args>` started in `cwd` with `env` would be. */
function become(job) {
  process.chdir(job.cwd);
  // open() takes the lowest free descriptor: closing 1 (then 2) and opening the log puts the log
  // there, as the cold start's spawn does with dup2. Node's exit-time reset of stdio leaves a
  // descriptor alone once it is another file.
  reopen(1, job.logFile);
  reopen(2, job.logFile);
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, job.env);
  process.argv = [process.execPath, resolve(job.cwd, job.script), ...job.args];
  // Shows in /proc/<pid>/cmdline (ps), as a cold start's argv does. process.title then reads as
  // the whole line where a cold start's reads `node`: V8 shows the native title as a plain value,
  // so it cannot be wrapped without losing the setter.
  process.title = job.title;
}
function reopen(fd, file) {
  closeSync(fd);
  const got = openSync(file, 'a');
  if (got !== fd) throw new Error(`log file ${file} opened as descriptor ${got}, not ${fd}`);
}
