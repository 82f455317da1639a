import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StateFileError, StoreClosedError, StoreOpenError, StoreValueError } from '../../src/store/index.js';

function errno(message: string, code: string): NodeJS.ErrnoException {
  const error = new Error(message) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

test('store errors - each class has its name, fields and cause', () => {
  const cause = errno('no such file', 'ENOENT');
  const cases: [Error, string, Record<string, unknown>][] = [
    [new StoreOpenError('/x/state.db', 'broken', { cause }), 'StoreOpenError', { path: '/x/state.db' }],
    [new StoreClosedError('/x/state.db', 'put'), 'StoreClosedError', { path: '/x/state.db', operation: 'put' }],
    [new StoreValueError('cells/a', 'stored text is not JSON', { cause }), 'StoreValueError', { key: 'cells/a' }],
    [new StateFileError('/x/cp.json', 'write', { cause }), 'StateFileError', { path: '/x/cp.json', operation: 'write' }],
  ];
  for (const [error, name, fields] of cases) {
    assert.ok(error instanceof Error);
    assert.equal(error.name, name);
    for (const [field, value] of Object.entries(fields)) assert.equal((error as never)[field], value, `${name}.${field}`);
    assert.match(String(error), new RegExp(`^${name}: `));
  }
  assert.equal(cases[0]![0].cause, cause);
  assert.match(cases[3]![0].message, /cannot write state file \/x\/cp\.json: no such file/);
});

test('store errors - toJSON and fromJSON round-trip through JSON text, cause included', () => {
  const cause = errno('disk full', 'ENOSPC');
  const wire = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

  const open = StoreOpenError.fromJSON(wire(new StoreOpenError('/a.db', 'bad', { cause }).toJSON()));
  assert.equal(open.path, '/a.db');
  assert.equal(open.message, 'cannot open store /a.db: bad');
  assert.equal((open.cause as NodeJS.ErrnoException).code, 'ENOSPC');

  const closed = StoreClosedError.fromJSON(wire(new StoreClosedError('/a.db', 'txn').toJSON()));
  assert.equal(closed.operation, 'txn');
  assert.equal(closed.message, 'store /a.db is closed (called txn)');

  const value = StoreValueError.fromJSON(wire(new StoreValueError('k', 'bad', { cause: 'text cause' }).toJSON()));
  assert.equal(value.key, 'k');
  assert.equal((value.cause as Error).message, 'text cause');

  const file = StateFileError.fromJSON(wire(new StateFileError('/cp.json', 'read').toJSON()));
  assert.equal(file.operation, 'read');
  assert.equal(file.cause, undefined);
  assert.equal('cause' in file, false);
});
