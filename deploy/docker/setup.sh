#!/bin/sh
# setup.sh build|runtime — the one setup step of each stage of the
# Dockerfile, run as root on a fresh Debian 12 with its package list next to
# it. Both stages: installs exactly the packages of STAGE-packages.txt ('#'
# comments and blank lines skipped, no recommends) and empties apt's caches.
# runtime also creates the unprivileged user and group `vecshard` (uid and
# gid 10001, home /data, no login shell) and /data owned by it.
# The Dockerfile runs it, and so does scripts/image_check.sh inside its
# debootstrapped roots, so the check proves what the image does.
set -eu
stage=${1:-}
case $stage in
build | runtime) ;;
*)
    echo "usage: setup.sh build|runtime" >&2
    exit 2
    ;;
esac
list=$(dirname "$0")/$stage-packages.txt
pkgs=$(sed -e 's/#.*//' "$list" | tr -s ' \t\n' ' ')
[ -n "${pkgs# }" ] || { echo "setup.sh: no packages in $list" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # one word per package
apt-get install -y -q --no-install-recommends $pkgs
apt-get clean
rm -rf /var/lib/apt/lists/*
[ "$stage" = runtime ] || exit 0
groupadd --system --gid 10001 vecshard
useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
    --shell /usr/sbin/nologin vecshard
install -d -o 10001 -g 10001 -m 0750 /data
