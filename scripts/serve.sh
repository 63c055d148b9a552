#!/usr/bin/env bash
# The main job: builds mcp-tools and the control plane (release), and the
# static mcp-tools that sandboxes on a template run, then starts the control
# plane with the local provider on 127.0.0.1:8080.
#
# Sandboxes run on the default template: a Debian root filesystem with the
# packages of sandbox-template/packages.txt, built with mmdebstrap into the
# data folder on the first run (a few minutes, with its progress shown) and
# reused by later runs. As root, the Debian packages this needs (mmdebstrap,
# bubblewrap, musl-tools) are installed when missing.
#
# Extra arguments go to `control-plane serve` (see `--help`). With
# `--default-template none` sandboxes see this machine's own system
# (read-only) instead, and nothing of the template is built.
set -euo pipefail
cd "$(dirname "$0")/.."

template=yes
previous=""
for arg in "$@"; do
    if [[ "$arg" == "--default-template=none" ]] ||
        [[ "$previous" == "--default-template" && "$arg" == none ]]; then
        template=no
    fi
    previous="$arg"
done
[[ "${CONTROL_PLANE_DEFAULT_TEMPLATE:-}" == none ]] && template=no

if [[ $template == yes ]]; then
    declare -A package=([mmdebstrap]=mmdebstrap [bwrap]=bubblewrap [musl-gcc]=musl-tools)
    missing=()
    for cmd in "${!package[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${package[$cmd]}")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "serve.sh: installing ${missing[*]} (for the sandbox template)" >&2
            apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            echo "serve.sh: sandboxes run on a Debian template, which needs ${missing[*]}:" >&2
            echo "  sudo apt-get install ${missing[*]}" >&2
            echo "or run on this machine's own system: scripts/serve.sh --default-template none" >&2
            exit 1
        fi
    fi
    if command -v rustup >/dev/null 2>&1 &&
        ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
        rustup target add x86_64-unknown-linux-musl
    fi
fi

cargo build --release --locked -p mcp-tools -p control-plane
# Where cargo put them (CARGO_TARGET_DIR or cargo's configuration may move them).
bin="$(scripts/bin-dir.sh)"
args=()
if [[ $template == yes ]]; then
    # A template has its own libc: its sandboxes run the static build.
    cargo build --release --locked --target x86_64-unknown-linux-musl -p mcp-tools
    args+=(--template-mcp-tools-bin "$(dirname "$bin")/x86_64-unknown-linux-musl/release/mcp-tools"
        --build-default-template)
fi
echo "binaries in $bin (export PATH=\"$bin:\$PATH\" to use the CLI)" >&2
exec "$bin/control-plane" serve "${args[@]}" "$@"
