#!/usr/bin/env bash
# Prints the folder where `cargo build --release` puts this workspace's
# binaries (with --debug: where `cargo build` puts them), wherever
# CARGO_TARGET_DIR or cargo's configuration sends them.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--debug" ]; then
    profile=debug
fi
dir=$(cargo metadata --format-version 1 --no-deps --offline |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [ -z "$dir" ]; then
    echo "bin-dir.sh: cannot find cargo's target folder" >&2
    exit 1
fi
echo "$dir/$profile"
