#!/usr/bin/env bash
# Measures the template's build time and size, from nothing (fresh apt
# cache, fresh podman store, fresh Debian base), for two package lists:
#   minimal   python-is-python3, nodejs and sudo (which e2b.Dockerfile uses)
#   full      packages.txt, the template as shipped
# Each build is build-rootfs.sh of e2b.Dockerfile with that list; the base
# image it makes with mmdebstrap (Debian minbase) is the reference the
# figures are given against. Needs root, mmdebstrap, podman, runc, and the
# static mcp-tools staged in bin/ (./stage.sh).
#
#   sandbox-template/measure.sh [WORK]   (WORK default: a temporary folder)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
[[ -x "$here/bin/mcp-tools" ]] || { echo "measure.sh: no bin/mcp-tools: run ./stage.sh first" >&2; exit 1; }
work="${1:-$(mktemp -d)}"
mkdir -p "$work"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A seconds size rootfs
for variant in minimal full; do
    context="$work/$variant/context"
    rm -rf "$work/$variant"
    mkdir -p "$context/bin"
    cp "$here/e2b.Dockerfile" "$context/"
    cp "$here/bin/mcp-tools" "$context/bin/"
    if [[ "$variant" == minimal ]]; then
        printf '%s\n' python-is-python3 nodejs sudo >"$context/packages.txt"
    else
        cp "$here/packages.txt" "$context/"
    fi
    started=$(date +%s)
    "$here/build-rootfs.sh" --work "$work/$variant/build" \
        --dockerfile "$context/e2b.Dockerfile" "$work/$variant/rootfs" >"$work/$variant/log" 2>&1 \
        || { tail -30 "$work/$variant/log" >&2; exit 1; }
    seconds[$variant]=$(($(date +%s) - started))
    log="$work/$variant/log"
    base_seconds=$(sed -n 's/^base image: \([0-9]*\) s$/\1/p' "$log")
    base_bytes=$(sed -n 's/^base image size: \([0-9]*\) bytes$/\1/p' "$log")
    build_seconds=$(sed -n 's/^image build: \([0-9]*\) s$/\1/p' "$log")
    size[$variant]=$(sed -n 's/^image size: \([0-9]*\) bytes$/\1/p' "$log")
    rootfs[$variant]=$(sed -n 's/^root filesystem size: \([0-9]*\) bytes$/\1/p' "$log")
    printf '%-8s total %4d s (base %d s, image build %d s); image %d MB = %.1fx the %d MB base; root filesystem %d MB\n' \
        "$variant" "${seconds[$variant]}" "$base_seconds" "$build_seconds" \
        $((size[$variant] / 1000000)) "$(ratio "${size[$variant]}" "$base_bytes")" \
        $((base_bytes / 1000000)) $((rootfs[$variant] / 1000000))
done
printf 'full / minimal: build time %.1fx, image size %.1fx\n' \
    "$(ratio "${seconds[full]}" "${seconds[minimal]}")" \
    "$(ratio "${size[full]}" "${size[minimal]}")"
