import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitTerminal, printable, renderTable } from '../../src/cli/table.js';

test('cli table - what a program printed reaches the terminal as text: escape sequences and line breaks are written out', () => {
  assert.equal(printable('exit 3: \x1b[31mred\x1b[0m\r\nnext\tcol\x07\x9b'), 'exit 3: \\x1b[31mred\\x1b[0m\\x0d\\nnext\\tcol\\x07\\x9b');
  assert.equal(printable('plain – ünïcode ✓'), 'plain – ünïcode ✓');
  assert.equal(printable('ok\u202egnp.exe\u200b'), 'ok\\u202egnp.exe\\u200b', 'a right-to-left override is shown, not obeyed');
  const table = renderTable(['CELL', 'REASON'], [['api', 'boom\n\x1b[2J'], ['db', 'ok']]);
  assert.equal(table.split('\n').length, 3, 'one line a row');
  assert.equal(table.includes('\x1b'), false);
  assert.match(table, /^api {3}boom\\n\\x1b\[2J$/m);
});

test('cli table - a live view fits its terminal: long lines cut, extra lines counted instead of scrolling the header away', () => {
  const text = `header line\n\n${Array.from({ length: 20 }, (_, i) => `row ${i} ${'x'.repeat(60)}`).join('\n')}\n`;
  const fitted = fitTerminal(text, 40, 12).replace(/\n$/, '').split('\n');
  assert.equal(fitted.length, 11, 'rows - 1 lines: the cursor stays on the screen');
  assert.equal(fitted[0], 'header line');
  assert.ok(fitted.every((l) => [...l].length <= 40), fitted.join('\n'));
  assert.equal(fitted.at(-1), '… 12 more lines');
  assert.equal(fitTerminal('short\n', 80, 24), 'short\n', 'what fits is left alone');
  assert.equal(fitTerminal('abc\n', undefined, undefined), 'abc\n');
});
