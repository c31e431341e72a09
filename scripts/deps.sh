#!/usr/bin/env bash
# Installs what vecshard needs that is missing: the Debian packages
# (docs/design.md §10) and the npm packages of the Node.js client and of the
# Kubernetes manifest checks. Idempotent: does nothing when all are present.
# Apart from the Debian packages it downloads only the npm packages pinned by
# clients/node/package-lock.json and deploy/k8s/test/package-lock.json (`npm
# ci`, when a node_modules is missing or older than its lock file).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkgs=(build-essential pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
      libcurl4-openssl-dev libcjson-dev libcunit1-dev etcd-server etcd-client
      python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
      python3-numpy libhnswlib-dev python3-hnswlib python3-setuptools python3-pip
      libmicrohttpd-dev prometheus debootstrap python3-yaml clang-14 libclang-rt-14-dev)
# Node.js for clients/node: Debian's nodejs and npm, unless a node is already
# installed (e.g. NodeSource's nodejs, which carries its own npm).
if ! command -v node >/dev/null; then
  pkgs+=(nodejs npm)
elif ! command -v npm >/dev/null; then
  pkgs+=(npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm writes node_modules/.package-lock.json on every install: older than
# package-lock.json means the lock file changed since. clients/node: the
# Node.js client; deploy/k8s/test: the Kubernetes schema validators
# (kubernetes-models) that tests/integration/test_k8s_manifests.py runs.
for rel in clients/node deploy/k8s/test; do
  node_dir="$REPO/$rel"
  stamp="$node_dir/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$node_dir/package-lock.json" -nt "$stamp" ]; then
    echo "deps: npm ci in $rel"
    (cd "$node_dir" && npm ci --no-audit --no-fund)
  else
    echo "deps: $rel/node_modules up to date"
  fi
done

# kubectl renders deploy/k8s (`kubectl kustomize`, offline). It is no Debian
# package (Debian 12's kubernetes-client is 1.20, whose kustomize cannot read
# these overlays); the machine image carries it.
command -v kubectl >/dev/null ||
  echo "deps: warning: kubectl not found: test_k8s_manifests.py will fail (it renders deploy/k8s)" >&2
