/**
 * The store part: the `Store` seam (versioned KV with CAS, transactions, TTLs, prefix watches), its
 * embedded SQLite implementation, and crash-safe JSON state files. Other parts import only this file.
 */
export type { PutOptions, Store, StoreEntry, TxnCompare, TxnOp, WatchEvent } from './store.js';
export { SqliteStore, openSqliteStore, prefixUpperBound } from './sqlite-store.js';
export type { SqliteStoreOptions } from './sqlite-store.js';
export {
  readJsonFile,
  readJsonFileSync,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileAtomicSync,
} from './atomic-file.js';
export type { WriteFileAtomicOptions } from './atomic-file.js';
export { StateFileError, StoreClosedError, StoreOpenError, StoreValueError } from './errors.js';
export type {
  SerializedCause,
  StateFileErrorJSON,
  StateFileOperation,
  StoreClosedErrorJSON,
  StoreOpenErrorJSON,
  StoreValueErrorJSON,
} from './errors.js';
