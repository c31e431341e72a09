#!/bin/sh
# runtime-setup.sh PACKAGE-LIST — the runtime stage's one setup step, run as
# root on a fresh Debian 12: installs exactly the packages of PACKAGE-LIST
# (runtime-packages.txt; '#' comments and blank lines skipped, no
# recommends), creates the unprivileged user and group `vecshard` (uid and
# gid 10001, home /data, no login shell) and /data owned by it, and empties
# apt's caches. The Dockerfile runs it, and so does scripts/image_check.sh
# inside its debootstrapped root, so the check proves what the image does.
set -eu
list=${1:?usage: runtime-setup.sh PACKAGE-LIST}
pkgs=$(sed -e 's/#.*//' "$list" | tr -s ' \t\n' ' ')
[ -n "${pkgs# }" ] || { echo "runtime-setup.sh: no packages in $list" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # one word per package
apt-get install -y -q --no-install-recommends $pkgs
apt-get clean
rm -rf /var/lib/apt/lists/*
groupadd --system --gid 10001 vecshard
useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
    --shell /usr/sbin/nologin vecshard
install -d -o 10001 -g 10001 -m 0750 /data
