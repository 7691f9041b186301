#!/usr/bin/env bash
# Runs every test of the workspace: nextest when installed (a process per test), else cargo test.
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast --failure-output final --status-level fail "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
