#!/usr/bin/env bash
# Benchmarks (they report, never assert on time). Prints Markdown tables; see
# docs/benchmarks.md for how to read them.
#   scripts/bench.sh                 both
#   scripts/bench.sh control-plane   device create/revoke on SQLite and a throw-away PostgreSQL
#   scripts/bench.sh node            node agent with real WireGuard in namespaces (root)
#   scripts/bench.sh dashboard       the web dashboard in Chromium against a real server and node (root)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
apt_need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }

if [ "$what" = all ] || [ "$what" = control-plane ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
  pg_dir=$(mktemp -d /tmp/clawn-pg.XXXXXX); chmod 755 "$pg_dir"
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  trap 'scripts/pg-test-cluster.sh stop "$pg_dir/data"; rm -rf "$pg_dir"' EXIT
  eval "$(scripts/pg-test-cluster.sh start "$pg_dir/data" "$pg_port")"
  export CLAWN_TEST_PG_URL
  cargo bench -p clawn-testkit --bench control_plane
  cargo bench -p clawn-testkit --bench routing
  # Scale: the release server binary as replicas on PostgreSQL, then one process on SQLite.
  cargo build --release -p clawn-server
  cargo bench -p clawn-testkit --bench scale
  (unset CLAWN_TEST_PG_URL; cargo bench -p clawn-testkit --bench scale)
fi

if [ "$what" = all ] || [ "$what" = node ]; then
  apt_need wireguard-go wireguard-go
  apt_need wg-quick wireguard-tools
  apt_need nft nftables
  apt_need ping iputils-ping
  apt_need iperf3 iperf3
  # The benchmark starts the release binaries next to itself.
  cargo build --release --workspace --bins
  cargo bench -p clawn-node --bench node
fi

if [ "$what" = all ] || [ "$what" = dashboard ]; then
  apt_need wireguard-go wireguard-go
  apt_need nft nftables
  [ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  (cd web && npm ci --no-audit --no-fund && npm run build)
  cargo build --release --workspace --bins
  (cd web && CLAWN_BIN_DIR="$PWD/../target/release" node bench/dashboard.mjs)
fi
