import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AbortError,
  CallTimeoutError,
  CellRpcError,
  ConnectionClosedError,
  ConnectionLostError,
  HandshakeError,
  ProtocolError,
  RemoteError,
} from '../../src/sdk/index.js';

const classes = [
  [CallTimeoutError, 'TIMEOUT'],
  [ConnectionLostError, 'CONNECTION_LOST'],
  [ConnectionClosedError, 'CONNECTION_CLOSED'],
  [ProtocolError, 'BAD_FRAME'],
  [HandshakeError, 'HANDSHAKE_FAILED'],
  [AbortError, 'ABORTED'],
  [RemoteError, 'HANDLER_ERROR'],
] as const;

test('sdk - every error class sets its name and default code, extends CellRpcError and chains a cause', () => {
  for (const [Class, code] of classes) {
    const cause = new Error('root');
    const error = new Class('it broke', { cause, cell: 'greeter', method: 'greet' });
    assert.ok(error instanceof CellRpcError);
    assert.ok(error instanceof Error);
    assert.equal(error.name, Class.name === 'AbortError' ? 'AbortError' : Class.name);
    assert.equal(error.code, code);
    assert.equal(error.cause, cause);
    assert.equal(error.cell, 'greeter');
    assert.equal(error.method, 'greet');
    assert.match(String(error), new RegExp(`^${error.name}: it broke`));
  }
  assert.equal(new AbortError('x').name, 'AbortError');
});

test('sdk - errors round-trip through JSON, to their own class or, from the base class, by name', () => {
  for (const [Class] of classes) {
    const error = new Class('over the wire', { cell: 'c', method: 'm', code: 'CUSTOM' });
    const json = JSON.parse(JSON.stringify(error));
    assert.deepEqual(Object.keys(json).sort(), [...(Class === RemoteError ? ['remoteName'] : []), 'cell', 'code', 'message', 'method', 'name'].sort());
    for (const back of [Class.fromJSON(json), CellRpcError.fromJSON(json)]) {
      assert.ok(back instanceof Class, `${Class.name} from ${JSON.stringify(json)}`);
      assert.deepEqual(back.toJSON(), error.toJSON());
    }
  }
  const unknown = CellRpcError.fromJSON({ name: 'SomethingElse', message: 'm', code: 'X' });
  assert.equal(unknown.constructor, CellRpcError);
  assert.equal(unknown.code, 'X');
});

test('sdk - RemoteError keeps the name of the error the handler threw', () => {
  const error = new RemoteError('no user 42', { remoteName: 'NotFoundError', code: 'NOT_FOUND', cell: 'users', method: 'get' });
  assert.equal(error.name, 'RemoteError');
  assert.equal(error.remoteName, 'NotFoundError');
  const back = RemoteError.fromJSON(JSON.parse(JSON.stringify(error)));
  assert.equal(back.remoteName, 'NotFoundError');
  // The ERROR op's fields carry the remote name as `name`.
  const fromWire = RemoteError.fromJSON({ name: 'TypeError', message: 'bad', code: 'HANDLER_ERROR', cell: 'c', method: 'm' });
  assert.equal(fromWire.remoteName, 'TypeError');
  assert.equal(fromWire.name, 'RemoteError');
});
