#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster on loopback for the test suite and prints the
# URL. Usage: eval "$(scripts/pg-test-cluster.sh start DIR PORT)"; scripts/pg-test-cluster.sh stop DIR
# Runs the server binaries as the `postgres` user (initdb refuses root).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data dir}; port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found; apt-get install -y postgresql" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
case "$cmd" in
  start)
    mkdir -p "$dir"; chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      log=$(mktemp); chmod 666 "$log"
      as_pg "'$bin/initdb' -D '$dir' -U clawn --auth=trust -E UTF8 >'$log' 2>&1" || { cat "$log" >&2; exit 1; }
      rm -f "$log"
    fi
    if ! as_pg "'$bin/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
    as_pg "'$bin/pg_ctl' -D '$dir' -w -t 60 -l '$dir/server.log' -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=128MB\" start" >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    fi
    echo "export CLAWN_TEST_PG_URL=postgres://clawn@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_pg "'$bin/pg_ctl' -D '$dir' -m fast -w stop" >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
