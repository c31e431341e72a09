#!/usr/bin/env bash
# image_check.sh — proves deploy/docker/Dockerfile without a Docker daemon
# (`make image-check`; deploy/docker/README.md, "The check").
#
#   1. runtime root: debootstrap a minimal Debian 12 (`--variant=minbase
#      bookworm`) with the apt sources of the debian:bookworm-slim image,
#      then run deploy/docker/setup.sh runtime (which installs exactly
#      runtime-packages.txt, no recommends, and creates the user vecshard
#      10001:10001 and /data) inside it with chroot: the very step and list
#      of the Dockerfile's runtime stage. The debootstrapped base and each
#      stage's root are cached as tarballs under $BUILD/image-check/, keyed
#      by the sha256 of setup.sh, the list and the mirrors; a warm run
#      unpacks them (IMAGE_CHECK_FRESH=1 ignores and replaces the cache).
#      First the build stage: a root with `setup.sh build`
#      (build-packages.txt), the sources git knows copied to /src and the
#      Dockerfile's make (-j2) inside it. IMAGE_CHECK_BUILD=0 skips it and
#      uses $BUILD's binaries (quicker, same Debian 12 libraries on a
#      Debian 12 host).
#   2. binaries: copies the files the Dockerfile's `COPY --from=build` line
#      names (from the build stage's root, or $BUILD) into
#      /usr/local/bin, as that line does.
#   3. inside the runtime root: `ldd` of each binary shows no "not found",
#      and every listed package that ships libraries ships one a binary
#      loads (the list is complete and holds nothing unused); as the user
#      10001:10001 each binary's --version exits 0 and prints its version,
#      and /data is writable.
#   4. smoke: deploy/local/cluster.sh starts etcd (the host's /usr/bin/etcd:
#      loopback is shared with the chroot) and one vecshard-node and one
#      vecshard-router, both run inside the root as 10001:10001 (through
#      wrappers that exec chroot, so the recorded pid is the program's;
#      /proc/PID/root and the uid are checked); then the CLI from the root
#      creates a 2-shard collection, loads 300 points and searches 10 of
#      them with k = 1: each query's hit must be the point itself. The
#      node's and the router's --http endpoints (127.0.0.1:0, libmicrohttpd)
#      answer /healthz and /readyz 200 and /metrics with vecshard_build_info.
#
# The cluster's directory is bind-mounted at the same path inside the root,
# so the paths cluster.sh passes mean the same thing on both sides. Every
# exit path stops the cluster (cluster.sh stop: only the pids it recorded),
# unmounts what was mounted and, once nothing under the work directory is
# mounted, removes it. Needs root (debootstrap, chroot, mount).
#
# Environment: VS_BUILD (default ./build), IMAGE_CHECK_BUILD=0,
# IMAGE_CHECK_FRESH=1, IMAGE_CHECK_KEEP=1 (keep the work dir for
# inspection), IMAGE_CHECK_MIRROR (http://deb.debian.org/debian),
# IMAGE_CHECK_SECURITY_MIRROR (http://deb.debian.org/debian-security),
# ETCD_BIN. Exit status: 0 the image works; 1 a check failed; 2 bad setup.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "${VS_BUILD:-$REPO/build}"
BUILD=$(cd "${VS_BUILD:-$REPO/build}" && pwd)
DOCKER_DIR=$REPO/deploy/docker
MIRROR=${IMAGE_CHECK_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${IMAGE_CHECK_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
USERSPEC=10001:10001
CACHE_DIR=$BUILD/image-check
export ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}

T0=$SECONDS
say() { echo "image-check [$((SECONDS - T0))s]: $*"; }
fail() {
    echo "image-check: FAIL: $*" >&2
    exit 1
}
setup_error() {
    echo "image-check: $*" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || setup_error "must run as root (debootstrap, chroot, mount)"
for tool in debootstrap chroot mount umount mountpoint sha256sum "$ETCD_BIN"; do
    command -v "$tool" >/dev/null || setup_error "$tool is missing (make deps; debootstrap is a Debian package)"
done

# The binaries the Dockerfile copies: the sources of its `COPY --from=build` line.
read -r -a COPY_LINE <<<"$(grep -m1 '^COPY --from=build ' "$DOCKER_DIR/Dockerfile")" ||
    setup_error "no 'COPY --from=build' line in deploy/docker/Dockerfile"
BINS=() BIN_SRCS=()
for word in "${COPY_LINE[@]:2:${#COPY_LINE[@]}-3}"; do
    BIN_SRCS+=("$word")
    BINS+=("$(basename "$word")")
done
[ ${#BINS[@]} -gt 0 ] || setup_error "the Dockerfile's COPY --from=build line names no binary"
if [ "${IMAGE_CHECK_BUILD:-1}" != 1 ]; then
    for b in "${BINS[@]}"; do
        [ -x "$BUILD/$b" ] || setup_error "$BUILD/$b is missing (make ${BUILD#"$REPO"/}/$b)"
    done
fi

WORK=$(mktemp -d /tmp/vecshard-image-check.XXXXXX)
ROOT=$WORK/root
SMOKE=$WORK/smoke # the cluster's dir, the same path inside the root
MOUNTS=()          # mount points, in mount order
CLUSTER_STARTED=0

# mounted_under DIR: prints the mount points at or below DIR.
mounted_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

cleanup() {
    local rc=$? i m left
    set +e
    if [ "$CLUSTER_STARTED" = 1 ]; then
        "$REPO/deploy/local/cluster.sh" stop --dir "$SMOKE" --grace 30 || rc=1
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}" || rc=1
    done
    # Mounts this script did not record (debootstrap's, if it was interrupted), deepest first.
    for m in $(mounted_under "$WORK" | sort -r); do
        umount "$m" || umount -l "$m"
    done
    left=$(mounted_under "$WORK")
    if [ -n "$left" ]; then
        echo "image-check: still mounted, $WORK left in place: $left" >&2
        rc=1
    elif [ "${IMAGE_CHECK_KEEP:-0}" = 1 ]; then
        echo "image-check: work dir kept: $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
    if [ "$rc" -eq 0 ]; then
        say "PASS"
    else
        echo "image-check: failed (exit $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# mount_proc DIR: /proc inside the root DIR (umount_last or cleanup undoes it).
mount_proc() {
    mount -t proc proc "$1/proc"
    MOUNTS+=("$1/proc")
}

umount_last() {
    umount "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
}

# in_root CMD...: runs CMD inside the root as the image's user.
in_root() {
    chroot --userspec="$USERSPEC" "$ROOT" "$@"
}

# ------------------------------------------------------------------ 1. roots
# The apt sources of the debian:bookworm-slim image (/etc/apt/sources.list.d/debian.sources).
write_sources() {
    rm -f "$1/etc/apt/sources.list"
    cat >"$1/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# cached NAME KEY DIR: unpacks $CACHE_DIR/NAME-KEY.tar into DIR (status 0),
# or status 1 when there is none or IMAGE_CHECK_FRESH=1 (and this run has
# not written it: both stages start from one fresh base).
CACHED_NOW=" "
cached() {
    local tarball=$CACHE_DIR/$1-$2.tar
    [ -f "$tarball" ] || return 1
    [ "${IMAGE_CHECK_FRESH:-0}" != 1 ] || [[ $CACHED_NOW == *" $1 "* ]] || return 1
    say "$1 root: unpacking the cached ${tarball#"$REPO"/}"
    tar -C "$3" --numeric-owner -xpf "$tarball"
}

# cache NAME KEY DIR: DIR becomes the cached NAME root (older keys removed).
cache() {
    mkdir -p "$CACHE_DIR"
    rm -f "$CACHE_DIR/$1"-*.tar
    tar -C "$3" --numeric-owner -cf "$CACHE_DIR/$1-$2.tar.tmp" . &&
        mv "$CACHE_DIR/$1-$2.tar.tmp" "$CACHE_DIR/$1-$2.tar"
    CACHED_NOW+="$1 "
}

# make_root STAGE DIR: the Dockerfile's `FROM debian:bookworm-slim` +
# `RUN setup.sh STAGE` in DIR: a minbase bookworm (debootstrap, cached as
# "base") with the image's apt sources, then setup.sh STAGE inside it with
# chroot (the result cached as "STAGE", keyed by setup.sh, the list and the
# base's key).
make_root() {
    local stage=$1 dir=$2 base_key key
    base_key=$(echo "$SUITE $MIRROR $SECURITY_MIRROR" | sha256sum | cut -c1-16)
    key=$(cat "$DOCKER_DIR/setup.sh" "$DOCKER_DIR/$stage-packages.txt" <(echo "$base_key") |
        sha256sum | cut -c1-16)
    mkdir -p "$dir"
    cached "$stage" "$key" "$dir" && return 0
    if ! cached base "$base_key" "$dir"; then
        say "base root: debootstrap --variant=minbase $SUITE from $MIRROR"
        debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
            { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
        write_sources "$dir"
        cache base "$base_key" "$dir"
    fi
    say "$stage root: setup.sh $stage: $(sed -e 's/#.*//' "$DOCKER_DIR/$stage-packages.txt" | xargs)"
    install -d "$dir/tmp/vecshard-setup"
    cp "$DOCKER_DIR/setup.sh" "$DOCKER_DIR/$stage-packages.txt" "$dir/tmp/vecshard-setup/"
    mount_proc "$dir"
    chroot "$dir" sh /tmp/vecshard-setup/setup.sh "$stage" >"$WORK/setup-$stage.log" 2>&1 ||
        { tail -n 30 "$WORK/setup-$stage.log" >&2; fail "setup.sh $stage failed in the root (log above)"; }
    umount_last
    rm -rf "$dir/tmp/vecshard-setup"
    # shellcheck disable=SC2016  # ${Package} is dpkg-query's, not the shell's
    say "$stage root: $(chroot "$dir" dpkg-query -W -f='${Package}\n' | wc -l) packages in all; caching it"
    cache "$stage" "$key" "$dir"
}

# The build stage (unless IMAGE_CHECK_BUILD=0): `COPY . .` (the files git tracks or
# does not ignore; what .dockerignore leaves out, git ignores too) and the
# Dockerfile's make, at -j2.
BIN_ROOT= # the root holding the COPY --from=build sources; "" = $BUILD's binaries
if [ "${IMAGE_CHECK_BUILD:-1}" = 1 ]; then
    BROOT=$WORK/build-root
    make_root build "$BROOT"
    install -d "$BROOT/src"
    git -C "$REPO" ls-files -z --cached --others --exclude-standard |
        tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$BROOT/src" -xf -
    say "build stage: make ${BINS[*]} from the sources"
    mount_proc "$BROOT"
    chroot "$BROOT" sh -c 'cd /src && make -j2 build/vecshard-node build/vecshard-router build/vecshard' \
        >"$WORK/build-stage.log" 2>&1 ||
        { tail -n 30 "$WORK/build-stage.log" >&2; fail "the build stage's make failed (log above)"; }
    umount_last
    BIN_ROOT=$BROOT
    say "build stage: built"
fi
make_root runtime "$ROOT"

# ------------------------------------------------------------------ 2. binaries
# As the Dockerfile's COPY: root-owned, mode kept (0755 from the linker).
for i in "${!BINS[@]}"; do
    if [ -n "$BIN_ROOT" ]; then
        src=$BIN_ROOT${BIN_SRCS[i]}
    else
        src=$BUILD/${BINS[i]}
    fi
    install -m 0755 "$src" "$ROOT/usr/local/bin/${BINS[i]}"
done
if [ -n "$BIN_ROOT" ]; then
    say "binaries: ${BINS[*]} in /usr/local/bin (from the build stage)"
else
    say "binaries: ${BINS[*]} in /usr/local/bin (from $BUILD)"
fi

# ------------------------------------------------------------------ 3. libraries, --version, user
mount_proc "$ROOT"
SONAMES= # every library a binary loads, one soname per line
for b in "${BINS[@]}"; do
    if ! out=$(chroot "$ROOT" ldd "/usr/local/bin/$b" 2>&1); then
        fail "ldd /usr/local/bin/$b failed in the root: $out"
    fi
    if grep -q 'not found' <<<"$out"; then
        fail "$b needs libraries that runtime-packages.txt does not bring: $(grep 'not found' <<<"$out" | xargs)"
    fi
    ver=$(in_root "/usr/local/bin/$b" --version) || fail "$b --version exited $? as $USERSPEC in the root"
    [[ $ver =~ ^$b\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "$b --version printed '$ver', not '$b X.Y.Z'"
    say "ldd: $b: $(wc -l <<<"$out") libraries, none missing; --version as $USERSPEC: $ver"
    SONAMES+=$(awk '$2 == "=>" { print $1 }' <<<"$out")$'\n'
done
# The list holds only what the binaries need: a listed package that ships
# shared libraries must ship one a binary loads (packages without a library,
# such as ca-certificates, are data and exempt; -dev packages never belong).
unused='' data=''
# shellcheck disable=SC2013  # words: a line may hold a package and a comment
for p in $(sed -e 's/#.*//' "$DOCKER_DIR/runtime-packages.txt"); do
    [[ $p != *-dev ]] || fail "runtime-packages.txt lists a -dev package: $p"
    libs=$(chroot "$ROOT" dpkg -L "$p" | awk -F/ '/\.so(\.|$)/ { print $NF }')
    if [ -z "$libs" ]; then
        data+=" $p"
    elif ! grep -qxF -f <(echo "$libs") <<<"$SONAMES"; then
        unused+=" $p"
    fi
done
[ -z "$unused" ] || fail "runtime-packages.txt lists library packages no binary loads:$unused"
say "runtime-packages.txt: every library package is loaded by a binary (no library:${data:- none})"
[ "$(chroot "$ROOT" id -u vecshard):$(chroot "$ROOT" id -g vecshard)" = "$USERSPEC" ] ||
    fail "the root has no user vecshard with uid:gid $USERSPEC"
in_root sh -c 'touch /data/.w && rm /data/.w' || fail "/data is not writable by $USERSPEC"
say "user: vecshard is $USERSPEC and can write /data"

# ------------------------------------------------------------------ 4. smoke
install -d -o 10001 -g 10001 "$SMOKE" "$SMOKE/node-0" "$ROOT$SMOKE"
mount --bind "$SMOKE" "$ROOT$SMOKE"
MOUNTS+=("$ROOT$SMOKE")
# cluster.sh runs $BUILD/vecshard-node and $BUILD/vecshard-router: wrappers
# that exec them inside the root as the image's user (same pid throughout),
# with the observability endpoint on a free loopback port.
install -d "$WORK/bin"
for b in vecshard-node vecshard-router; do
    printf '#!/bin/sh\nexec chroot --userspec=%s %s /usr/local/bin/%s --http 127.0.0.1:0 "$@"\n' \
        "$USERSPEC" "$ROOT" "$b" >"$WORK/bin/$b"
    chmod 0755 "$WORK/bin/$b"
done
/usr/bin/python3 - "$SMOKE" <<'PY'
import random, struct, sys
d = sys.argv[1]
rnd = random.Random(10)
rows = [[rnd.uniform(-1, 1) for _ in range(8)] for _ in range(300)]
def fvecs(path, vecs):
    with open(path, "wb") as f:
        for v in vecs:
            f.write(struct.pack("<i%df" % len(v), len(v), *v))
fvecs(d + "/base.fvecs", rows)
fvecs(d + "/query.fvecs", [rows[i] for i in range(0, 300, 30)])
PY
chmod 0644 "$SMOKE"/*.fvecs
say "smoke: starting etcd (host), vecshard-node and vecshard-router (in the root as $USERSPEC)"
CLUSTER_STARTED=1
router=$("$REPO/deploy/local/cluster.sh" start --dir "$SMOKE" --nodes 1 --build "$WORK/bin" --timeout 60) ||
    fail "the cluster did not start (logs: $SMOKE/*.log; IMAGE_CHECK_KEEP=1 keeps them)"
# The node and the router really run inside the root, as the image's user.
while read -r name pid _ _; do
    [ "$name" = etcd ] && continue
    [ "$(readlink "/proc/$pid/root")" = "$ROOT" ] || fail "$name (pid $pid) does not run inside the root"
    uids=$(awk '/^Uid:/ { print $2 ":" $3 }' "/proc/$pid/status")
    [ "$uids" = 10001:10001 ] || fail "$name (pid $pid) runs as uid $uids, not 10001"
done <"$SMOKE/procs"
say "smoke: router at $router; node-0 and router run in the root as uid 10001"
cli() {
    in_root /usr/local/bin/vecshard --router "$router" "$@"
}
cli create smoke --dim 8 --shards 2 >/dev/null || fail "vecshard create exited $?"
cli load smoke "$SMOKE/base.fvecs" 2>/dev/null | tail -n 1 | sed 's/^/  /' || fail "vecshard load failed"
hits=$(cli search smoke --query "$SMOKE/query.fvecs" --k 1 --print --json) || fail "vecshard search exited $?"
/usr/bin/python3 - "$hits" <<'PY' || fail "search through the router did not return each query's own point"
import json, sys
lines = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
queries = [l for l in lines if "query" in l]
assert len(queries) == 10, "%d queries answered, not 10" % len(queries)
for q in queries:
    hit = q["hits"][0]
    want = q["query"] * 30
    assert hit["id"] == want and hit["distance"] < 1e-5, "query %d: hit %s, want id %d" % (q["query"], hit, want)
print("  10/10 queries: top hit is the point itself (distance 0)")
PY
say "smoke: create, load (300 points), search (10 queries, k = 1) through the router: ok"
# The --http endpoint (libmicrohttpd) of both: /healthz and /readyz 200, /metrics with build info.
for name in node-0 router; do
    addr=$(sed -n 's/.*msg="http listening" addr=\([^ ]*\).*/\1/p' "$SMOKE/$name.log" | tail -n 1 | tr -d '"')
    [ -n "$addr" ] || fail "$name logged no 'http listening' line ($SMOKE/$name.log)"
    /usr/bin/python3 - "$name" "$addr" <<'PY' || fail "$name's --http endpoint at $addr does not answer as documented"
import sys, urllib.request
name, addr = sys.argv[1:]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for path in ("/healthz", "/readyz"):
    with opener.open("http://%s%s" % (addr, path), timeout=5) as r:
        assert r.status == 200, "%s %s: %d" % (name, path, r.status)
with opener.open("http://%s/metrics" % addr, timeout=5) as r:
    text = r.read().decode()
assert 'vecshard_build_info{' in text and 'version="' in text, "%s /metrics has no vecshard_build_info" % name
print("  %s http %s: /healthz 200, /readyz 200, /metrics %d lines with vecshard_build_info" % (name, addr, text.count("\n")))
PY
done
