#!/usr/bin/env bash
# The main job: builds mcp-tools and the control plane (release), then
# starts the control plane with the local provider on 127.0.0.1:8080.
# Extra arguments go to `control-plane serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p mcp-tools -p control-plane
# Where cargo put them (CARGO_TARGET_DIR or cargo's configuration may move them).
bin="$(scripts/bin-dir.sh)"
echo "binaries in $bin (export PATH=\"$bin:\$PATH\" to use the CLI)" >&2
exec "$bin/control-plane" serve "$@"
