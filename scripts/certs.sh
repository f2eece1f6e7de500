#!/usr/bin/env bash
# A private certificate authority and certificates signed by it, for etcd (client and peer TLS,
# one client certificate per Nexus component), PostgreSQL (sslmode=verify-full) and the gateway.
#
#   scripts/certs.sh DIR NAME [SAN ...]
#
# Makes DIR/ca.crt and DIR/ca.key once (kept if present: every certificate of DIR shares the CA),
# then DIR/NAME.crt and DIR/NAME.key: common name NAME (etcd takes a client certificate's CN as its
# user name), subject alternative names DNS:localhost, IP:127.0.0.1 and each SAN given ("DNS:x" or
# "IP:x"; a bare name is a DNS name), usable by servers and clients. An existing NAME pair is kept.
# Keys are ECDSA P-256, private (0600); certificates are valid for 825 days, the CA for 10 years.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME [SAN ...]" >&2; exit 2; }
dir=$1 name=$2
shift 2
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "certs.sh: bad name '$name'" >&2; exit 2; }
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=Nexus local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt" 2>/dev/null
  chmod 644 "$dir/ca.crt"
fi

if [ -s "$dir/$name.crt" ] && [ -s "$dir/$name.key" ]; then exit 0; fi
sans="DNS:localhost,IP:127.0.0.1"
for s in "$@"; do
  case "$s" in
    DNS:* | IP:*) sans="$sans,$s" ;;
    *) sans="$sans,DNS:$s" ;;
  esac
done
ext=$(mktemp)
trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EOF
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key"
openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 825 -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
chmod 644 "$dir/$name.crt"
chmod 600 "$dir/$name.key"
