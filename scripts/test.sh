#!/usr/bin/env bash
# The whole test suite: unit, integration and e2e (the e2e tests drive the real `cell` command).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ ! -f node_modules/better-sqlite3/build/Release/better_sqlite3.node ]; then
  npm ci
fi
npm run build --silent
files=$(find test -name '*.test.ts' | sort)
# A hung test fails after 10 minutes instead of holding CI until its limit; force-exit ends a
# test file whose timed-out test left handles open (the e2e harness then kills its meshes).
exec node --test --test-concurrency=2 --test-timeout=600000 --test-force-exit --import tsx $files
