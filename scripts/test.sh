#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Debian packages),
# starts a throw-away PostgreSQL on loopback, builds the dashboard, then runs format and
# lint checks and every test (unit, integration on SQLite and PostgreSQL, binary-level,
# WireGuard in network namespaces, the dashboard in Chromium). Exit code is the verdict.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# The node end-to-end tests: userspace WireGuard clients (wg-quick + wireguard-go), the
# agent's nftables rules, ping, and network namespaces (iproute2).
command -v wireguard-go >/dev/null 2>&1 || need_apt+=(wireguard-go)
command -v wg-quick >/dev/null 2>&1 || need_apt+=(wireguard-tools)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The replica test puts three control planes behind a real load balancer.
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
# The dashboard's browser tests drive Debian's Chromium with playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

pg_dir=$(mktemp -d /tmp/clawn-pg.XXXXXX)
chmod 755 "$pg_dir"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { scripts/pg-test-cluster.sh stop "$pg_dir/data" || true; rm -rf "$pg_dir"; }
trap cleanup EXIT
echo "==> starting PostgreSQL on 127.0.0.1:$pg_port"
eval "$(scripts/pg-test-cluster.sh start "$pg_dir/data" "$pg_port")"
export CLAWN_TEST_PG_URL

# The dashboard is built first: clawn-server embeds web/dist at compile time.
echo "==> dashboard: npm ci, type check and build"
(cd web && npm ci --no-audit --no-fund && npm run build)

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> control plane without WireGuard code (no node agent in its dependency tree)"
cargo build -p clawn-server --no-default-features --locked
if cargo tree -p clawn-server --no-default-features -e normal --prefix none | grep -E '^(clawn-node|boringtun|nftables|rtnetlink|netlink)' ; then
  echo "error: the control plane without default features still depends on WireGuard code" >&2
  exit 1
fi
echo "==> tests"
# The end-to-end tests start the workspace's binaries (server, CLI, node agent).
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --locked --doc
echo "==> dashboard in Chromium (screenshots in web/test-results/screenshots)"
(cd web && npm test)
