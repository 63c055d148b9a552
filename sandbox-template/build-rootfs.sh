#!/usr/bin/env bash
# Builds the template image without a Docker engine and exports its root
# filesystem to a folder, where its start command can be run (the test
# suite runs it under bubblewrap). Needs root, mmdebstrap, podman and runc
# (Debian packages).
#
#   ./build-rootfs.sh OUT                  build e2b.Dockerfile (bin/ staged first)
#   ./build-rootfs.sh --dockerfile FILE OUT
#                                          build another Dockerfile, in its own folder
#   ./build-rootfs.sh --work DIR ...       keep the base image, apt's cache and
#                                          podman's store in DIR (default:
#                                          target/sandbox-template-build)
#   ./build-rootfs.sh --build-arg K=V ...  a build argument (repeatable), e.g.
#                                          INSTALL_CODE_SERVER=true
#
# The base image (`FROM debian:<release>-slim`) is made here with mmdebstrap
# (--variant=minbase) and imported under that name, so nothing is pulled
# from a registry. The build shares one apt cache with mmdebstrap: a
# package is downloaded once per work folder. Prints the time and size of
# each step.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

dockerfile="$here/e2b.Dockerfile"
work="${CARGO_TARGET_DIR:-$repo/target}/sandbox-template-build"
out=""
build_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dockerfile) dockerfile="${2:?--dockerfile needs a file}"; shift 2 ;;
        --build-arg) build_args+=(--build-arg "${2:?--build-arg needs K=V}"); shift 2 ;;
        --work) work="${2:?--work needs a folder}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) [[ -z "$out" ]] || { usage >&2; exit 2; }; out="$1"; shift ;;
    esac
done
[[ -n "$out" ]] || { usage >&2; exit 2; }
[[ -f "$dockerfile" ]] || { echo "build-rootfs.sh: no Dockerfile at $dockerfile" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || { echo "build-rootfs.sh: needs root (mmdebstrap, podman's chroot isolation)" >&2; exit 1; }
for tool in mmdebstrap podman runc tar; do
    command -v "$tool" >/dev/null || {
        echo "build-rootfs.sh: $tool is missing (apt-get install mmdebstrap podman runc)" >&2
        exit 1
    }
done
dockerfile="$(cd "$(dirname "$dockerfile")" && pwd)/$(basename "$dockerfile")"
context="$(dirname "$dockerfile")"

# FROM debian:<release>-slim: the release mmdebstrap builds.
from="$(awk 'toupper($1) == "FROM" { print $2; exit }' "$dockerfile")"
if [[ ! "$from" =~ ^debian:([a-z]+)-slim$ ]]; then
    echo "build-rootfs.sh: $dockerfile starts FROM $from; only debian:<release>-slim is built here" >&2
    exit 1
fi
release="${BASH_REMATCH[1]}"
base_image="docker.io/library/$from"

mkdir -p "$work/apt-archives" "$work/storage" "$work/run"
work="$(cd "$work" && pwd)"
# One build at a time per work folder: apt's cache and podman's store are
# shared between builds.
exec 9>"$work/lock"
flock 9
# The control plane's local template builds may share the apt cache
# (--template-apt-cache): they take turns with the steps below that use it
# (the base image and the image build) through this lock.
exec 8>"$work/apt-archives.lock"
flock 8

podman=(podman --root "$work/storage" --runroot "$work/run"
    --runtime runc --cgroup-manager cgroupfs)
# One tag per Dockerfile name: a rebuild replaces the image it built last
# time, and its unchanged steps come from podman's cache.
tag="localhost/sandbox-template-build:$(basename "$dockerfile" | tr 'A-Z' 'a-z')"

step() { printf '==> %s\n' "$*"; }
took() { printf '%s: %d s\n' "$1" "$(($(date +%s) - $2))"; }

base="$work/base-$release.tar"
if [[ ! -s "$base" ]]; then
    step "base image $from with mmdebstrap"
    started=$(date +%s)
    rm -f "$base.part"
    mmdebstrap --variant=minbase --format=tar --skip=download/empty --skip=essential/unlink \
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
        --setup-hook="sync-in $work/apt-archives /var/cache/apt/archives/" \
        --customize-hook="sync-out /var/cache/apt/archives $work/apt-archives" \
        "$release" "$base.part"
    mv "$base.part" "$base"
    "${podman[@]}" rmi --force "$base_image" >/dev/null 2>&1 || true
    took "base image" "$started"
fi
if ! "${podman[@]}" image exists "$base_image"; then
    "${podman[@]}" import --quiet "$base" "$base_image" >/dev/null
fi
printf 'base image size: %d bytes\n' "$(stat -c %s "$base")"

# A machine behind a TLS-inspecting proxy trusts an extra CA (Node's
# NODE_EXTRA_CA_CERTS); the build's npm gets it too, mounted, never copied
# into the image.
if [[ -n "${NODE_EXTRA_CA_CERTS:-}" && -r "$NODE_EXTRA_CA_CERTS" ]]; then
    build_args+=(--volume "$NODE_EXTRA_CA_CERTS:/run/host-extra-ca.crt:ro"
        --build-arg NODE_EXTRA_CA_CERTS=/run/host-extra-ca.crt)
fi

step "image from $dockerfile"
started=$(date +%s)
"${podman[@]}" build --pull=never --isolation=chroot --runtime=runc \
    --volume "$work/apt-archives:/var/cache/apt/archives" "${build_args[@]}" \
    --file "$dockerfile" --tag "$tag" "$context"
took "image build" "$started"
flock -u 8
printf 'image size: %d bytes\n' "$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")"

step "root filesystem to $out"
started=$(date +%s)
container="$("${podman[@]}" create "$tag" /bin/true)"
cleanup() {
    "${podman[@]}" rm --force "$container" >/dev/null 2>&1 || true
    # Images the tag left for a newer one.
    "${podman[@]}" image prune --force >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$out"
mkdir -p "$out"
"${podman[@]}" export "$container" | tar -x --numeric-owner -C "$out"
took "export" "$started"
printf 'root filesystem size: %d bytes\n' "$(du -sb "$out" | cut -f1)"
