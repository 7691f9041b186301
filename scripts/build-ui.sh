#!/usr/bin/env bash
# Builds the portal's single-page app into $TARGET_DIR/ui (kopa serves it from there, or
# from [portal] ui_dir): cargo for wasm32, then wasm-bindgen (the CLI pinned to the
# library's version, STACK.md), then the static files beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$TARGET_DIR/ui"
CARGO_PROFILE_RELEASE_DEBUG=0 cargo build -p kopa-portal-ui --target wasm32-unknown-unknown --release
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" \
  "$TARGET_DIR/wasm32-unknown-unknown/release/kopa_portal_ui.wasm"
cp portal/ui/static/start.js portal/ui/static/portal.css "$OUT/"
echo "Portal UI in $OUT ($(du -sh "$OUT" | cut -f1))"
