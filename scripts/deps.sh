#!/usr/bin/env bash
# Installs the Debian packages vecshard needs (docs/design.md §10) that are missing.
# Idempotent: does nothing when all are present; never downloads anything else.
set -euo pipefail
pkgs=(build-essential pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
      libcurl4-openssl-dev libcjson-dev libcunit1-dev etcd-server etcd-client
      python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
      python3-numpy libhnswlib-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
