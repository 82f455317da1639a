import { test } from 'node:test';
import assert from 'node:assert/strict';
import { printable, renderTable } from '../../src/cli/table.js';

test('cli table - what a program printed reaches the terminal as text: escape sequences and line breaks are written out', () => {
  assert.equal(printable('exit 3: \x1b[31mred\x1b[0m\r\nnext\tcol\x07\x9b'), 'exit 3: \\x1b[31mred\\x1b[0m\\x0d\\nnext\\tcol\\x07\\x9b');
  assert.equal(printable('plain – ünïcode ✓'), 'plain – ünïcode ✓');
  const table = renderTable(['CELL', 'REASON'], [['api', 'boom\n\x1b[2J'], ['db', 'ok']]);
  assert.equal(table.split('\n').length, 3, 'one line a row');
  assert.equal(table.includes('\x1b'), false);
  assert.match(table, /^api {3}boom\\n\\x1b\[2J$/m);
});
