#!/usr/bin/env bash
# Puts a static mcp-tools at sandbox-template/bin/mcp-tools, where
# e2b.Dockerfile copies it from.
#
#   ./stage.sh            build it here: cargo, musl target (needs rustup)
#   ./stage.sh --docker   build it with Docker, from the root Dockerfile's
#                         `artifacts` stage (needs only Docker)
#   ./stage.sh --binary PATH
#                         stage a binary that was built elsewhere
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target=x86_64-unknown-linux-musl

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

mode=cargo
case "${1:-}" in
    "") ;;
    --docker) mode=docker ;;
    --binary)
        mode=binary
        src="${2:?--binary needs the path of a static mcp-tools}"
        ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

case "$mode" in
    binary) ;;
    docker)
        # E2B runs x86_64; --platform keeps the build right on an arm64 host.
        (cd "$repo" && docker build --platform linux/amd64 --target artifacts \
            --output type=local,dest=dist .)
        src="$repo/dist/mcp-tools"
        ;;
    cargo)
        if ! rustup target list --installed | grep -qx "$target"; then
            rustup target add "$target"
        fi
        (cd "$repo" && cargo build --release --locked --target "$target" -p mcp-tools)
        src="${CARGO_TARGET_DIR:-$repo/target}/$target/release/mcp-tools"
        ;;
esac

if [[ ! -f "$src" ]]; then
    echo "stage.sh: no binary at $src" >&2
    exit 1
fi
# The template image may carry any libc, or none: only a static binary is
# sure to run there.
if command -v file >/dev/null; then
    if ! file -L "$src" | grep -Eq 'statically linked|static-pie linked'; then
        echo "stage.sh: $src is not statically linked:" >&2
        file -L "$src" >&2
        echo "build it for $target (run this script without --binary)" >&2
        exit 1
    fi
fi

install -D -m 0755 "$src" "$here/bin/mcp-tools"
echo "staged $here/bin/mcp-tools ($(wc -c <"$here/bin/mcp-tools") bytes)"
