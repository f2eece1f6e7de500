#!/usr/bin/env bash
# Starts or stops a local development PostgreSQL 15: 127.0.0.1:$port, data in $data/postgres,
# database telemetry, user telemetry, password "password" (the defaults of DB_*).
set -euo pipefail
cmd=$1 data=$2 port=$3
bin=/usr/lib/postgresql/15/bin
dir="$(cd "$(dirname "$data")" && pwd)/$(basename "$data")/postgres"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }
case "$cmd" in
  start)
    if ready; then echo "PostgreSQL already serving on 127.0.0.1:$port"; exit 0; fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg sh -c "printf password > '$dir/pw' && '$bin/initdb' -D '$dir/data' -U telemetry --pwfile '$dir/pw' -A scram-sha-256 -E UTF8 --locale=C >/dev/null && rm '$dir/pw'"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    PGPASSWORD=password "$bin/psql" -h 127.0.0.1 -p "$port" -U telemetry -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'telemetry'" | grep -q 1 \
      || PGPASSWORD=password "$bin/createdb" -h 127.0.0.1 -p "$port" -U telemetry telemetry
    echo "PostgreSQL running on 127.0.0.1:$port (database telemetry, user telemetry; data $dir/data, log $dir/postgres.log)" ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; echo "PostgreSQL stopped"
    else echo "no local PostgreSQL running"; fi ;;
  *) echo "usage: $0 start|stop data port"; exit 2 ;;
esac
