#!/usr/bin/env bash
# Starts or stops a local etcd with TLS and least privilege (make setup-etcd-secure):
#
#   scripts/local-etcd-secure.sh start|stop DATA PORT PEER
#
# start: a private CA and certificates (scripts/certs.sh, in DATA/etcd-secure/certs: "server" for
# etcd's client and peer ports, and one client certificate per etcd user: root, admin, streamer,
# scraper, collector, gateway, each with its user name as CN); etcd on https://127.0.0.1:PORT with client
# certificates required (--client-cert-auth: the CN is the user) and TLS between peers too, data in
# DATA/etcd-secure/data; then `nexus etcd-roles --apply --enable-auth` as root (one role and user
# per component, on MESSAGE_QUEUE_PREFIX and REGISTRY_PREFIX when set), and one settings file per
# user, DATA/etcd-secure/<user>.env (ETCD_* for nexus, ETCDCTL_* for etcdctl). Safe to run again:
# certificates, a running etcd and roles in place are kept.
# stop: stops it (scripts/local-etcd.sh stop, which make stop-etcd runs, stops either kind).
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 start|stop DATA PORT PEER" >&2; exit 2; }
cmd=$1 data=$2 port=$3 peer=$4
root=$(cd "$(dirname "$0")/.." && pwd)
# etcdctl refuses flags that an ETCDCTL_* variable also sets (a sourced <user>.env sets them).
while read -r v; do unset "$v"; done < <(compgen -e | grep '^ETCDCTL_' || true)
mkdir -p "$data/etcd-secure"
dir=$(cd "$data/etcd-secure" && pwd)
certs="$dir/certs"
pidfile="$dir/etcd.pid"
listen="https://127.0.0.1:$port"
# What clients use: a name (localhost, in every certificate), not an IP address, which Node.js
# warns about as a TLS server name.
endpoint="https://localhost:$port"
users=(root admin streamer scraper collector gateway)

tls() { echo --endpoints "$endpoint" --cacert "$certs/ca.crt" --cert "$certs/$1.crt" --key "$certs/$1.key"; }
# shellcheck disable=SC2046
healthy() { etcdctl $(tls root) --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
running() { [ -f "$pidfile" ] && [ "$(ps -p "$(cat "$pidfile")" -o comm= 2>/dev/null)" = etcd ]; }

case "$cmd" in
  start)
    for name in server "${users[@]}"; do "$root/scripts/certs.sh" "$certs" "$name"; done
    if listening && healthy; then
      echo "secure etcd already serving on $endpoint"
    else
      if listening; then
        if etcdctl --endpoints "127.0.0.1:$port" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; then
          echo "a plain etcd (make setup-etcd) serves 127.0.0.1:$port: make stop-etcd first, or another ETCD_PORT" >&2
        else
          echo "something else listens on 127.0.0.1:$port: choose another ETCD_PORT" >&2
        fi
        exit 1
      fi
      # A session of its own, as scripts/local-etcd.sh does.
      setsid nohup etcd --name nexus-secure --data-dir "$dir/data" \
        --listen-client-urls "$listen" --advertise-client-urls "$endpoint" \
        --cert-file "$certs/server.crt" --key-file "$certs/server.key" \
        --client-cert-auth --trusted-ca-file "$certs/ca.crt" \
        --listen-peer-urls "https://127.0.0.1:$peer" --initial-advertise-peer-urls "https://127.0.0.1:$peer" \
        --initial-cluster "nexus-secure=https://127.0.0.1:$peer" \
        --peer-cert-file "$certs/server.crt" --peer-key-file "$certs/server.key" \
        --peer-client-cert-auth --peer-trusted-ca-file "$certs/ca.crt" \
        --auto-compaction-mode revision --auto-compaction-retention 10000 \
        --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) \
        >"$dir/etcd.log" 2>&1 &
      echo $! >"$pidfile"
      up=0
      for _ in $(seq 1 100); do
        if listening && healthy; then up=1; break; fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "etcd failed to start:"; tail -20 "$dir/etcd.log"; exit 1; fi
        sleep 0.1
      done
      [ $up = 1 ] || { echo "etcd did not become healthy; see $dir/etcd.log"; exit 1; }
      echo "secure etcd running on $endpoint (pid $(cat "$pidfile"), data $dir/data, log $dir/etcd.log)"
    fi
    # The roles, as etcd's root user (its certificate), from the same definitions as nexus etcd-roles.
    (cd "$root" && env -u ETCD_USERNAME -u ETCD_PASSWORD \
      ETCD_ENDPOINTS="$endpoint" ETCD_CA_FILE="$certs/ca.crt" \
      ETCD_CERT_FILE="$certs/root.crt" ETCD_KEY_FILE="$certs/root.key" \
      node --import tsx src/cli/main.ts etcd-roles --apply --enable-auth)
    umask 077
    for user in "${users[@]}"; do
      {
        echo "# nexus on the secure etcd of make setup-etcd-secure, as etcd user \"$user\" (the CN of $user.crt)"
        echo "ETCD_ENDPOINTS=$endpoint"
        echo "ETCD_CA_FILE=$certs/ca.crt"
        echo "ETCD_CERT_FILE=$certs/$user.crt"
        echo "ETCD_KEY_FILE=$certs/$user.key"
        if [ -n "${MESSAGE_QUEUE_PREFIX:-}" ]; then echo "MESSAGE_QUEUE_PREFIX=$MESSAGE_QUEUE_PREFIX"; fi
        if [ -n "${REGISTRY_PREFIX:-}" ]; then echo "REGISTRY_PREFIX=$REGISTRY_PREFIX"; fi
        echo "# etcdctl as the same user"
        echo "ETCDCTL_ENDPOINTS=$endpoint"
        echo "ETCDCTL_CACERT=$certs/ca.crt"
        echo "ETCDCTL_CERT=$certs/$user.crt"
        echo "ETCDCTL_KEY=$certs/$user.key"
      } >"$dir/$user.env"
    done
    echo "settings per component: $dir/{streamer,scraper,collector,gateway,admin,root}.env"
    echo "  e.g. (set -a; . $dir/collector.env; set +a; node bin/nexus.js collector)" ;;
  stop)
    if running; then
      pid=$(cat "$pidfile"); kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"; echo "secure etcd stopped"
    else rm -f "$pidfile"; echo "no local secure etcd running"; fi ;;
  *) echo "usage: $0 start|stop DATA PORT PEER" >&2; exit 2 ;;
esac
