#!/usr/bin/env bash
# Create and exec latency of local sandboxes: p50 and p90 of N creates and
# of N `true` commands, for each folder of binaries given (each holding
# control-plane and mcp-tools), so a change is measured against a reference
# in the same run. The first folder is the reference; ratios are against it.
#
# Then a burst: BURST commands at once across the sandboxes, which grows the
# control plane's memory, and N creates more: their p50 against the first
# creates' shows whether a bigger control plane makes each create slower
# (it does when sandboxes are started by fork, which copies the parent's
# page tables; not with posix_spawn). The control plane's RSS after the
# burst is reported too.
#
#   scripts/bench-local.sh target/release                    # one build
#   scripts/bench-local.sh /path/to/old/target/release target/release
#
# A folder may carry extra `serve` flags after `::`, to compare settings of
# one build, e.g. sandboxes without and with a disk quota:
#   scripts/bench-local.sh 'target/release::--default-disk-size-mb 0' target/release
# or sandboxes on this machine's system (the default here) and on a built
# local template (they run the static mcp-tools; the flags on one line):
#   T="--default-template default --templates-dir control-plane-data/templates"
#   T+=" --template-mcp-tools-bin target/x86_64-unknown-linux-musl/release/mcp-tools"
#   scripts/bench-local.sh target/release "target/release::$T"
#
# Env: N (default 40) samples of each; BURST (default 400) commands at once;
# ISOLATION (default auto).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BIN_DIR [BIN_DIR...]" >&2; exit 2; }
N="${N:-40}"
BURST="${BURST:-400}"
ISOLATION="${ISOLATION:-auto}"

bench_one() {
    local bin="${1%%::*}" flags=() data
    [[ "$1" == *::* ]] && read -ra flags <<<"${1#*::}"
    data="$(mktemp -d)"
    # On this machine's system unless the flags name a template (an
    # environment variable: binaries from before templates ignore it).
    CONTROL_PLANE_DEFAULT_TEMPLATE=none \
    "$bin/control-plane" serve --port 0 --data-dir "$data/data" --addr-file "$data/addr" \
        --mcp-tools-bin "$bin/mcp-tools" --isolation "$ISOLATION" --max-running $((2 * N + 5)) \
        --log-level warn "${flags[@]}" 2>"$data/log" &
    local pid=$!
    for _ in $(seq 100); do [ -s "$data/addr" ] && break; sleep 0.1; done
    [ -s "$data/addr" ] || { cat "$data/log" >&2; exit 1; }
    python3 - "http://$(cat "$data/addr")" "$N" "$BURST" "$pid" <<'EOF'
import concurrent.futures, json, statistics, sys, time, urllib.error, urllib.request
base, n, burst, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{path}: {e.code} {e.read().decode()}")
    return (time.perf_counter() - t) * 1000, out
creates, ids = [], []
for _ in range(n):
    ms, out = post("/sandboxes/create", {"user_id": "bench"})
    creates.append(ms); ids.append(out["sandbox_id"])
post("/sandboxes/run-command", {"sandbox_id": ids[0], "command": "true"})  # opens the session
execs = [post("/sandboxes/run-command", {"sandbox_id": ids[0], "command": "true"})[0] for _ in range(n)]
rss_before = rss_mib()
for sid in ids:  # one session per sandbox before the burst
    post("/sandboxes/run-command", {"sandbox_id": sid, "command": "true"})
with concurrent.futures.ThreadPoolExecutor(max_workers=burst) as pool:
    list(pool.map(lambda i: post("/sandboxes/run-command",
                                 {"sandbox_id": ids[i % n], "command": "echo burst"}),
                  range(burst)))
rss_burst = rss_mib()
after = []
for _ in range(n):
    ms, out = post("/sandboxes/create", {"user_id": "bench"})
    after.append(ms); ids.append(out["sandbox_id"])
for sid in ids:
    urllib.request.urlopen(urllib.request.Request(base + f"/sandboxes/{sid}", method="DELETE"), timeout=60)
q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1]
print(json.dumps({"create_p50": q(creates, 50), "create_p90": q(creates, 90),
                  "exec_p50": q(execs, 50), "exec_p90": q(execs, 90),
                  "after_burst_p50": q(after, 50), "rss_before": rss_before,
                  "rss_burst": rss_burst}))
EOF
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}

results=()
for bin in "$@"; do
    results+=("$(bench_one "$bin")")
done
python3 - "$@" -- "${results[@]}" <<'EOF'
import json, sys
args = sys.argv[1:]
sep = args.index("--")
bins, results = args[:sep], [json.loads(r) for r in args[sep + 1:]]
ref = results[0]
print(f"{'binaries':40} {'create p50':>11} {'p90':>8} {'exec p50':>9} {'p90':>8}   ratios p50 (create, exec)")
for b, r in zip(bins, results):
    print(f"{b:40} {r['create_p50']:9.1f}ms {r['create_p90']:6.1f}ms {r['exec_p50']:7.2f}ms {r['exec_p90']:6.2f}ms"
          f"   {r['create_p50'] / ref['create_p50']:.2f}x, {r['exec_p50'] / ref['exec_p50']:.2f}x")
print()
print(f"{'binaries':40} {'RSS before':>11} {'after burst':>12} {'create p50 after':>17}   vs before the burst")
for b, r in zip(bins, results):
    print(f"{b:40} {r['rss_before']:8.1f}MiB {r['rss_burst']:9.1f}MiB {r['after_burst_p50']:15.1f}ms"
          f"   {r['after_burst_p50'] / r['create_p50']:.2f}x")
EOF
