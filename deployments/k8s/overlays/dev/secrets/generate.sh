#!/bin/sh
# Writes random dev secrets next to this script (kept: run it again to keep them, delete the
# files for new ones), for `kubectl apply -k` of this directory. Never commit them (.gitignore).
set -eu
cd "$(dirname "$0")"
umask 077
printf 'postgres' >postgresql-superuser-username
for f in postgresql-superuser-password db-collector-password db-gateway-password; do
  [ -s "$f" ] || openssl rand -base64 24 | tr -d '\n' >"$f"
done
echo "dev secrets in $(pwd): kubectl apply -k $(pwd)"
