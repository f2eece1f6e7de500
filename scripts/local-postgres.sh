#!/usr/bin/env bash
# Starts or stops a local development PostgreSQL 15: 127.0.0.1:$port, data in $data/postgres,
# database telemetry, user telemetry (the defaults of DB_*), whose password is random, made at
# the first start in $data/postgres/password (mode 0600): DB_PASSWORD_FILE for the components
# (the Makefile's run targets and scripts/pipeline.ts pass it).
set -euo pipefail
cmd=$1 data=$2 port=$3
bin=/usr/lib/postgresql/15/bin
dir="$(cd "$(dirname "$data")" && pwd)/$(basename "$data")/postgres"
pwfile="$dir/password"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }
case "$cmd" in
  # Whether a PostgreSQL serves on the port (exit 0), whoever started it.
  running) ready ;;
  start)
    if ready; then echo "PostgreSQL already serving on 127.0.0.1:$port"; exit 0; fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$pwfile")
      # initdb runs as the postgres user: it reads a copy of its own, removed at once.
      if [ "$(id -u)" = 0 ]; then install -m 600 -o postgres "$pwfile" "$dir/initdb.pw"; else install -m 600 "$pwfile" "$dir/initdb.pw"; fi
      as_pg "$bin/initdb" -D "$dir/data" -U telemetry --pwfile "$dir/initdb.pw" -A scram-sha-256 -E UTF8 --locale=C >/dev/null
      rm -f "$dir/initdb.pw"
    elif [ ! -s "$pwfile" ]; then
      # A data directory made when the password was "password" for every local PostgreSQL.
      (umask 077 && echo password >"$pwfile")
      echo "note: this local PostgreSQL was made with the old fixed password; $pwfile now holds it (ALTER ROLE telemetry PASSWORD ... and rewrite the file to change it)"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    export PGPASSWORD
    PGPASSWORD=$(head -n 1 "$pwfile")
    "$bin/psql" -h 127.0.0.1 -p "$port" -U telemetry -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'telemetry'" | grep -q 1 \
      || "$bin/createdb" -h 127.0.0.1 -p "$port" -U telemetry telemetry
    echo "PostgreSQL running on 127.0.0.1:$port (database telemetry, user telemetry, password in $pwfile; data $dir/data, log $dir/postgres.log)" ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; echo "PostgreSQL stopped"
    else echo "no local PostgreSQL running"; fi ;;
  *) echo "usage: $0 start|stop|running data port"; exit 2 ;;
esac
