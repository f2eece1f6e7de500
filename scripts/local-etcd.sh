#!/usr/bin/env bash
# Starts or stops a local development etcd: client on 127.0.0.1:$port, data in $data/etcd.
set -euo pipefail
cmd=$1 data=$2 port=$3 peer=$4
# etcdctl refuses flags that an ETCDCTL_* variable also sets (the NOSPACE runbook exports
# ETCDCTL_ENDPOINTS): the health check would fail and a second etcd start on a busy port.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^ETCDCTL_' || true)
dir="$data/etcd"
pidfile="$dir/etcd.pid"
mkdir -p "$dir"
healthy() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --dial-timeout 1s endpoint health >/dev/null 2>&1; }
case "$cmd" in
  # Whether an etcd serves on the port (exit 0), whoever started it.
  running) healthy ;;
  start)
    if healthy; then echo "etcd already serving on 127.0.0.1:$port"; exit 0; fi
    # A session of its own: a Ctrl-C in the terminal that started it (make run-nexus-pipeline)
    # must not kill it under the components that are still stopping.
    setsid nohup etcd --name nexus-dev --data-dir "$dir/data" \
      --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "nexus-dev=http://127.0.0.1:$peer" \
      --auto-compaction-mode revision --auto-compaction-retention 10000 \
      --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) \
      >"$dir/etcd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if healthy; then echo "etcd running on 127.0.0.1:$port (pid $(cat "$pidfile"), data $dir, log $dir/etcd.log)"; exit 0; fi
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "etcd failed to start:"; tail -20 "$dir/etcd.log"; exit 1; fi
      sleep 0.1
    done
    echo "etcd did not become healthy; see $dir/etcd.log"; exit 1 ;;
  stop | stop-plain)
    # stop: either kind, this plain one and the secure one of scripts/local-etcd-secure.sh;
    # stop-plain: this plain one only (what scripts/pipeline.ts started).
    stopped=0
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      pid=$(cat "$pidfile"); kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"; echo "etcd stopped"; stopped=1
    fi
    if [ "$cmd" = stop ] && [ -f "$data/etcd-secure/etcd.pid" ]; then
      "$(dirname "$0")/local-etcd-secure.sh" stop "$data" "$port" "$peer"; stopped=1
    fi
    [ "$stopped" = 1 ] || echo "no local etcd running" ;;
  *) echo "usage: $0 start|stop|stop-plain|running data port peer"; exit 2 ;;
esac
