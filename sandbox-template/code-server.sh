#!/bin/sh
# The editor step of the sandbox environment: installs code-server (VS Code
# in the browser) from npm's registry into /opt/code-server, with
# /usr/local/bin/code-server. Every build that includes the editor runs it
# as root after packages.txt is installed: e2b.Dockerfile, template.py, the
# root Dockerfile's `sandbox` stage and local templates (`control-plane
# template build --with-vscode`).
#
# Only npm's registry and Debian's archive are reached, never nodejs.org or
# GitHub:
#   - code-server is pinned to the last release whose `engines.node` is 18,
#     the Node.js of Debian bookworm (later releases want Node 20, 22, 24);
#   - its native modules are built with node-gyp against Debian's Node
#     headers (libnode-dev), not headers downloaded from nodejs.org;
#   - VS Code's ripgrep package downloads its binary from GitHub at install:
#     it is given Debian's rg (the same ripgrep 13) in the cache it looks in
#     first.
# A build machine behind a TLS-inspecting proxy passes its CA bundle in
# NODE_EXTRA_CA_CERTS (npm's own setting). About 3 minutes and 450 MB.
#
# code-server is not started here: the control plane starts it in each
# sandbox, bound inside the sandbox on port 9000 and with that sandbox's own
# password.
set -eu

CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.89.1}"
NODE_MAJOR=18
PREFIX=/opt/code-server

say() { printf 'code-server.sh: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "run it as root"; exit 1; }
[ -n "${NODE_EXTRA_CA_CERTS:-}" ] || unset NODE_EXTRA_CA_CERTS

# Build-only needs besides packages.txt (which brings nodejs, npm,
# build-essential, python3, ripgrep): Node's headers, and Kerberos' for
# VS Code's kerberos module.
missing=""
for pkg in libnode-dev libkrb5-dev pkg-config; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    rm -rf /var/lib/apt/lists/*
fi

for tool in node npm make python3; do
    command -v "$tool" >/dev/null || {
        say "$tool is missing: the editor needs nodejs, npm, build-essential and python3 (packages.txt)"
        exit 1
    }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" != "$NODE_MAJOR" ]; then
    say "code-server $CODE_SERVER_VERSION needs Node.js $NODE_MAJOR; this system has $(node --version)"
    exit 1
fi
command -v rg >/dev/null || { say "rg (Debian's ripgrep) is missing"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# npm's cache and temporary files stay in $work, so nothing of the build is
# left in the image.
export HOME="$work/home" TMPDIR="$work/tmp" npm_config_cache="$work/npm-cache"
mkdir -p "$HOME" "$TMPDIR"
export npm_config_nodedir=/usr npm_config_python=/usr/bin/python3
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# The kerberos module asks for experimental N-API, whose finalizer type in
# Node 18.20's headers the node-addon-api it uses predates; this is the
# headers' own opt-out (js_native_api_types.h).
export CXXFLAGS="${CXXFLAGS:-} -DNODE_API_EXPERIMENTAL_NOGC_ENV_OPT_OUT"

say "code-server $CODE_SERVER_VERSION from npm"
npm pack --silent --pack-destination "$work" "code-server@$CODE_SERVER_VERSION" >/dev/null
tar -xzf "$work/code-server-$CODE_SERVER_VERSION.tgz" -C "$work" package/lib/vscode/npm-shrinkwrap.json
rg_pkg="$(node -p "require('$work/package/lib/vscode/npm-shrinkwrap.json').packages['node_modules/@vscode/ripgrep'].version")"
npm pack --silent --pack-destination "$work" "@vscode/ripgrep@$rg_pkg" >/dev/null
tar -xzf "$work/vscode-ripgrep-$rg_pkg.tgz" -C "$work" package/lib/postinstall.js
rg_release="$(sed -n "s/^const VERSION = '\(.*\)';/\1/p" "$work/package/lib/postinstall.js")"
[ -n "$rg_release" ] || { say "cannot tell which ripgrep @vscode/ripgrep $rg_pkg downloads"; exit 1; }
case "$(uname -m)" in
    x86_64) rg_target=x86_64-unknown-linux-musl ;;
    aarch64) rg_target=aarch64-unknown-linux-musl ;;
    *) say "no ripgrep target known for $(uname -m)"; exit 1 ;;
esac
cache="$TMPDIR/vscode-ripgrep-cache-$rg_pkg"
mkdir -p "$cache" "$work/rg"
cp "$(command -v rg)" "$work/rg/rg"
tar -czf "$cache/ripgrep-$rg_release-$rg_target.tar.gz" -C "$work/rg" rg

# A local install, not `npm install --global`: code-server's own install
# step runs npm again in its subfolders, and a global flag inherited there
# installs them beside it instead of into it.
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
cd "$PREFIX"
npm install --unsafe-perm --omit=dev --no-package-lock "code-server@$CODE_SERVER_VERSION"
rm -f "$PREFIX/package.json"
ln -sf "$PREFIX/node_modules/code-server/out/node/entry.js" /usr/local/bin/code-server

rg_bin="$PREFIX/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg"
"$rg_bin" --version >/dev/null || { say "VS Code's ripgrep at $rg_bin does not run"; exit 1; }
say "installed: code-server $(code-server --config /dev/null --version)"
