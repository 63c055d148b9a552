#!/usr/bin/env bash
# Checks VS Code in the browser for real, outside the test suite (a build
# with the editor takes minutes: npm downloads and native modules). As root.
#
#   ./test-editor.sh image [--work DIR]
#       builds e2b.Dockerfile with INSTALL_CODE_SERVER=true (build-rootfs.sh;
#       DIR is its work folder), then starts code-server in the exported root
#       as the control plane starts it in a sandbox (the same command, as
#       `user`, in a network namespace of its own). Needs mmdebstrap, podman,
#       runc, bubblewrap and a staged bin/mcp-tools (./stage.sh).
#   ./test-editor.sh local
#       starts a control plane (the binaries of scripts/bin-dir.sh, release
#       or else debug, and the static mcp-tools of the musl build), builds a local template with
#       `control-plane template build vscode --with-vscode`, creates a
#       sandbox on it and reaches its editor through vscode_url. Needs
#       mmdebstrap and bubblewrap.
#
# Either way it checks, where a browser would reach the editor:
#   - GET /healthz answers 200 without a login (what the control plane probes);
#   - the editor without a login: 302 to ./login, and its WebSocket 401;
#   - a wrong password: no session;
#   - the password (the sandbox's token): a session, the editor page (200)
#     and its WebSocket (101, through the control plane's route in `local`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
usage() { sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
mode="${1:-}"
shift || true
work_args=()
case "$mode" in
    image)
        if [[ "${1:-}" == --work ]]; then work_args=(--work "${2:?--work needs a folder}"); fi ;;
    local) ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac
[[ "$(id -u)" == 0 ]] || { echo "test-editor.sh: run it as root" >&2; exit 1; }
for tool in bwrap curl nsenter python3; do
    command -v "$tool" >/dev/null || { echo "test-editor.sh: $tool is missing" >&2; exit 1; }
done

scratch="$(mktemp -d /var/tmp/test-editor.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT
took() { printf '%s: %d s\n' "$1" "$(($(date +%s) - $2))"; }
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

if [[ "$mode" == image ]]; then
    root="$scratch/root"
    started=$(date +%s)
    "$here/build-rootfs.sh" "${work_args[@]}" --build-arg INSTALL_CODE_SERVER=true "$root"
    took "build with the editor" "$started"
    printf 'code-server install: %s\n' "$(du -sh "$root/opt/code-server" | cut -f1)"
    uid="$(awk -F: '$1 == "user" { print $3 }' "$root/etc/passwd")"
    [[ -n "$uid" ]] || { echo "test-editor.sh: the image has no user \`user\`" >&2; exit 1; }
    mkdir -p "$scratch/home"
    chown "$uid:$uid" "$scratch/home"
    password="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    # The control plane's command (control-plane/src/sandboxes/editor.rs),
    # as the sandbox's user, the password in the environment only.
    started=$(date +%s)
    env -i PASSWORD="$password" PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/user LANG=C.UTF-8 \
        bwrap --ro-bind "$root" / --proc /proc --dev /dev \
        --perms 01777 --tmpfs /tmp --bind "$scratch/home" /home/user --chdir /home/user \
        --unshare-net --unshare-pid --die-with-parent --info-fd 3 \
        setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs -- \
        sh -c 'exec code-server --bind-addr 127.0.0.1:9000 --auth password --config /dev/null --disable-telemetry --disable-update-check "$PWD"' \
        3>"$scratch/info" >"$scratch/editor.log" 2>&1 &
    pids+=($!)
    # bwrap's child, in the new namespaces: curl runs in its network namespace.
    editor_pid=""
    for _ in $(seq 100); do
        editor_pid="$(sed -n 's/.*"child-pid": *\([0-9]*\).*/\1/p' "$scratch/info")"
        [[ -z "$editor_pid" ]] || break
        sleep 0.1
    done
    [[ -n "$editor_pid" ]] || { cat "$scratch/editor.log" >&2; exit 1; }
    pids=("$editor_pid" "${pids[@]}")
    web() { nsenter --net="/proc/$editor_pid/ns/net" curl -s "$@"; }
    url=http://127.0.0.1:9000
    for _ in $(seq 600); do
        [[ "$(web -o /dev/null -w '%{http_code}' "$url/healthz")" == 200 ]] && break
        kill -0 "$editor_pid" 2>/dev/null || { cat "$scratch/editor.log" >&2; exit 1; }
        sleep 0.1
    done
    took "code-server answered /healthz" "$started"
else
    bin="$("$repo/scripts/bin-dir.sh")"
    [[ -x "$bin/control-plane" ]] || bin="$("$repo/scripts/bin-dir.sh" --debug)"
    static="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-musl/release/mcp-tools"
    for f in "$bin/control-plane" "$bin/mcp-tools" "$static"; do
        [[ -x "$f" ]] || { echo "test-editor.sh: $f is not built" >&2; exit 1; }
    done
    "$bin/control-plane" serve --port 0 --addr-file "$scratch/addr" --data-dir "$scratch/data" \
        --mcp-tools-bin "$bin/mcp-tools" --template-mcp-tools-bin "$static" \
        --default-template none >"$scratch/control-plane.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do [[ -s "$scratch/addr" ]] && break; sleep 0.1; done
    api="http://$(cat "$scratch/addr")"
    export CONTROL_PLANE_URL="$api"
    started=$(date +%s)
    "$bin/control-plane" template build vscode --with-vscode 2>"$scratch/build.log" \
        || { tail -30 "$scratch/build.log" >&2; exit 1; }
    took "template build with the editor" "$started"
    "$bin/control-plane" template list
    started=$(date +%s)
    created="$(curl -s -X POST "$api/sandboxes/create" -H 'content-type: application/json' \
        -d '{"user_id":"editor-test","template_id":"vscode"}')"
    id="$(json '["sandbox_id"]' <<<"$created")"
    password="$(json '["mcp_headers"]["Authorization"].split(" ")[1]' <<<"$created")"
    printf 'created %s; vscode_url at create: %s\n' "$id" "$(json '["vscode_url"]' <<<"$created")"
    url=None
    for _ in $(seq 600); do
        url="$(curl -s "$api/sandboxes/$id/status" | json '["vscode_url"]')"
        [[ "$url" == None ]] || break
        sleep 0.1
    done
    [[ "$url" != None ]] || { echo "FAILED: vscode_url never appeared" >&2; exit 1; }
    took "vscode_url $url after create" "$started"
    host="${url#http://}"
    web() { curl -s --resolve "$host:127.0.0.1" "$@"; }
fi

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
ws=(-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13'
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==')
ws_url="$url/?reconnectionToken=test&reconnection=false&skipWebSocketFrames=false"
# An upgraded connection stays open: curl gives up after 3 s, having seen the status.
status() { web -o /dev/null -w '%{http_code}' --max-time 3 "$@" || true; }

check "healthz without a login" 200 "$(status "$url/healthz")"
check "editor without a login" "302 ./login" "$(web -o /dev/null -w '%{http_code} %header{location}' "$url/")"
check "WebSocket without a login" 401 "$(status "${ws[@]}" "$ws_url")"
check "wrong password: session cookies" 0 \
    "$(web -o /dev/null -c - -d password=wrong "$url/login" | grep -c code-server-session || true)"
check "password: login" 302 "$(status -c "$scratch/cookies" -d "password=$password" "$url/login")"
check "editor with the session" 200 "$(status -b "$scratch/cookies" "$url/?folder=/home/user")"
check "WebSocket with the session" 101 "$(status -b "$scratch/cookies" "${ws[@]}" "$ws_url")"
# Neither the logs here nor, in `local`, the sandbox's job logs hold it.
for log in "$scratch"/*.log "$scratch"/data/sandboxes/*/state; do
    if [[ -e "$log" ]] && grep -rqs "$password" "$log"; then
        echo "FAILED: the password is in $log"
        failed=1
    fi
done
exit "$failed"
