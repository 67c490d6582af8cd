#!/usr/bin/env bash
# Runs the control-plane benchmark on SQLite and on a throw-away PostgreSQL.
# Prints Markdown tables (see docs/benchmarks.md for how to read them).
set -euo pipefail
cd "$(dirname "$0")/.."
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
pg_dir=$(mktemp -d /tmp/clawn-pg.XXXXXX); chmod 755 "$pg_dir"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'scripts/pg-test-cluster.sh stop "$pg_dir/data"; rm -rf "$pg_dir"' EXIT
eval "$(scripts/pg-test-cluster.sh start "$pg_dir/data" "$pg_port")"
export CLAWN_TEST_PG_URL
cargo bench -p clawn-testkit --bench control_plane
