#!/usr/bin/env bash
# Checks the template's editor for real, outside the test suite (the build
# takes minutes: npm downloads and native modules): builds e2b.Dockerfile
# with INSTALL_CODE_SERVER=true (build-rootfs.sh), then starts code-server in
# the exported root as the control plane starts it in a sandbox (same
# command, as `user`, in a network namespace of its own) and checks, inside
# that namespace:
#   - GET /healthz answers 200 without a login (what the control plane probes);
#   - the editor without a login: 302 to ./login, and its WebSocket 401;
#   - a wrong password: no session;
#   - the password: a session, the editor page (200) and its WebSocket (101).
# Needs root, mmdebstrap, podman, runc, bubblewrap, curl, and a staged
# bin/mcp-tools (./stage.sh).
#
#   ./test-editor.sh [--work DIR]     DIR: build-rootfs.sh's work folder
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work_args=()
case "${1:-}" in
    --work) work_args=(--work "${2:?--work needs a folder}") ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--work DIR]" >&2; exit 2 ;;
esac
for tool in bwrap curl nsenter; do
    command -v "$tool" >/dev/null || { echo "test-editor.sh: $tool is missing" >&2; exit 1; }
done

scratch="$(mktemp -d /var/tmp/test-editor.XXXXXX)"
bwrap_pid=""
editor_pid=""
cleanup() {
    # The first process of the editor's pid namespace: all of it ends with it.
    [[ -z "$editor_pid" ]] || kill -KILL "$editor_pid" 2>/dev/null || true
    [[ -z "$bwrap_pid" ]] || wait "$bwrap_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
root="$scratch/root"

started=$(date +%s)
"$here/build-rootfs.sh" "${work_args[@]}" --build-arg INSTALL_CODE_SERVER=true "$root"
printf 'build with the editor: %d s\n' "$(($(date +%s) - started))"
printf 'code-server install: %s\n' "$(du -sh "$root/opt/code-server" | cut -f1)"

uid="$(awk -F: '$1 == "user" { print $3 }' "$root/etc/passwd")"
[[ -n "$uid" ]] || { echo "test-editor.sh: the image has no user \`user\`" >&2; exit 1; }
mkdir -p "$scratch/home"
chown "$uid:$uid" "$scratch/home"
password="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# The control plane's command (control-plane/src/sandboxes/editor.rs), as
# the sandbox's user, the password in the environment only.
started=$(date +%s)
env -i PASSWORD="$password" PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/user LANG=C.UTF-8 \
    bwrap --ro-bind "$root" / --proc /proc --dev /dev \
    --perms 01777 --tmpfs /tmp --bind "$scratch/home" /home/user --chdir /home/user \
    --unshare-net --unshare-pid --die-with-parent --info-fd 3 \
    setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs -- \
    sh -c 'exec code-server --bind-addr 127.0.0.1:9000 --auth password --config /dev/null --disable-telemetry --disable-update-check "$PWD"' \
    3>"$scratch/info" >"$scratch/code-server.log" 2>&1 &
bwrap_pid=$!
# bwrap's child, in the new namespaces: curl runs in its network namespace.
for _ in $(seq 100); do
    editor_pid="$(sed -n 's/.*"child-pid": *\([0-9]*\).*/\1/p' "$scratch/info")"
    [[ -z "$editor_pid" ]] || break
    sleep 0.1
done
[[ -n "$editor_pid" ]] || { cat "$scratch/code-server.log" >&2; exit 1; }
inside() { nsenter --net="/proc/$editor_pid/ns/net" "$@"; }
for _ in $(seq 300); do
    [[ "$(inside curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9000/healthz)" == 200 ]] && break
    kill -0 "$bwrap_pid" 2>/dev/null || { cat "$scratch/code-server.log" >&2; exit 1; }
    sleep 0.1
done
printf 'code-server answered /healthz after %d s\n' "$(($(date +%s) - started))"

failed=0
check() {
    local what="$1" want="$2" got="$3"
    if [[ "$got" == "$want" ]]; then
        printf 'ok: %s: %s\n' "$what" "$got"
    else
        printf 'FAILED: %s: got %s, want %s\n' "$what" "$got" "$want"
        failed=1
    fi
}
url=http://127.0.0.1:9000
ws=(-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13'
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==')
ws_url="$url/?reconnectionToken=test&reconnection=false&skipWebSocketFrames=false"
# An upgraded connection stays open: curl gives up after 3 s, having seen the status.
status() { inside curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" || true; }

check "healthz without a login" 200 "$(status "$url/healthz")"
check "editor without a login" "302 ./login" \
    "$(inside curl -s -o /dev/null -w '%{http_code} %header{location}' "$url/")"
check "WebSocket without a login" 401 "$(status "${ws[@]}" "$ws_url")"
check "wrong password: session cookies" 0 \
    "$(inside curl -s -o /dev/null -c - -d password=wrong "$url/login" | grep -c code-server-session || true)"
check "password: login" 302 \
    "$(status -c "$scratch/cookies" -d "password=$password" "$url/login")"
check "editor with the session" 200 "$(status -b "$scratch/cookies" "$url/?folder=/home/user")"
check "WebSocket with the session" 101 "$(status -b "$scratch/cookies" "${ws[@]}" "$ws_url")"
if grep -q "$password" "$scratch/code-server.log"; then
    echo "FAILED: the password is in code-server's log"
    failed=1
fi
exit "$failed"
