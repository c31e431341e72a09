#!/usr/bin/env bash
# image_check.sh — proves deploy/docker/Dockerfile's runtime stage without a
# Docker daemon (`make image-check`; deploy/docker/README.md, "The check").
#
#   1. root: debootstrap a minimal Debian 12 (`--variant=minbase bookworm`)
#      with the apt sources of the debian:bookworm-slim image, then run
#      deploy/docker/runtime-setup.sh on deploy/docker/runtime-packages.txt
#      inside it with chroot: the very step and list the Dockerfile runs
#      (exactly those packages, no recommends; the user vecshard 10001:10001
#      and /data). The result is cached as a tarball under
#      $BUILD/image-check/, keyed by the sha256 of the list, the setup
#      script and the mirrors; a warm run unpacks it instead
#      (IMAGE_CHECK_FRESH=1 ignores and replaces the cache).
#   2. binaries: copies the files the Dockerfile's `COPY --from=build` line
#      names from $BUILD into /usr/local/bin, as that line does.
#   3. inside the root: `ldd` of each binary shows no "not found"; as the
#      user 10001:10001 each binary's --version exits 0 and prints its
#      version, and /data is writable.
#   4. smoke: deploy/local/cluster.sh starts etcd (the host's /usr/bin/etcd:
#      loopback is shared with the chroot) and one vecshard-node and one
#      vecshard-router, both run inside the root as 10001:10001 (through
#      wrappers that exec chroot, so the recorded pid is the program's);
#      then the CLI from the root creates a 2-shard collection, loads 300
#      points and searches 10 of them with k = 1: each query's hit must be
#      the point itself at distance 0.
#
# The cluster's directory is bind-mounted at the same path inside the root,
# so the paths cluster.sh passes mean the same thing on both sides. Every
# exit path stops the cluster (cluster.sh stop: only the pids it recorded),
# unmounts what was mounted and, once nothing under the root is mounted,
# removes the work directory. Needs root (debootstrap, chroot, mount).
#
# Environment: VS_BUILD (default ./build), IMAGE_CHECK_MIRROR
# (http://deb.debian.org/debian), IMAGE_CHECK_SECURITY_MIRROR
# (http://deb.debian.org/debian-security), IMAGE_CHECK_FRESH=1,
# IMAGE_CHECK_KEEP=1 (keep the work dir for inspection), ETCD_BIN.
# Exit status: 0 the image's runtime works; 1 a check failed; 2 bad setup.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
BINS=()
for word in "${COPY_LINE[@]:2:${#COPY_LINE[@]}-3}"; do
    BINS+=("$(basename "$word")")
done
[ ${#BINS[@]} -gt 0 ] || setup_error "the Dockerfile's COPY --from=build line names no binary"
for b in "${BINS[@]}"; do
    [ -x "$BUILD/$b" ] || setup_error "$BUILD/$b is missing (make ${BUILD#"$REPO"/}/$b)"
done

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
    local rc=$? i left
    set +e
    if [ "$CLUSTER_STARTED" = 1 ]; then
        "$REPO/deploy/local/cluster.sh" stop --dir "$SMOKE" --grace 30 || rc=1
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}" || rc=1
    done
    left=$(mounted_under "$ROOT")
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

mount_proc() {
    mount -t proc proc "$ROOT/proc"
    MOUNTS+=("$ROOT/proc")
}

umount_last() {
    umount "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
}

# in_root CMD...: runs CMD inside the root as the image's user.
in_root() {
    chroot --userspec="$USERSPEC" "$ROOT" "$@"
}

# ------------------------------------------------------------------ 1. root
# The apt sources of the debian:bookworm-slim image (/etc/apt/sources.list.d/debian.sources).
write_sources() {
    rm -f "$ROOT/etc/apt/sources.list"
    cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
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

key=$(cat "$DOCKER_DIR/runtime-packages.txt" "$DOCKER_DIR/runtime-setup.sh" <(echo "$SUITE $MIRROR $SECURITY_MIRROR") |
    sha256sum | cut -c1-16)
TARBALL=$CACHE_DIR/rootfs-$key.tar
mkdir -p "$ROOT"
if [ -f "$TARBALL" ] && [ "${IMAGE_CHECK_FRESH:-0}" != 1 ]; then
    say "root: unpacking the cached $TARBALL"
    tar -C "$ROOT" --numeric-owner -xpf "$TARBALL"
else
    say "root: debootstrap --variant=minbase $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
    write_sources
    say "root: runtime-setup.sh on runtime-packages.txt: $(sed -e 's/#.*//' "$DOCKER_DIR/runtime-packages.txt" | xargs)"
    install -d "$ROOT/tmp/vecshard-setup"
    cp "$DOCKER_DIR/runtime-packages.txt" "$DOCKER_DIR/runtime-setup.sh" "$ROOT/tmp/vecshard-setup/"
    mount_proc
    chroot "$ROOT" sh /tmp/vecshard-setup/runtime-setup.sh /tmp/vecshard-setup/runtime-packages.txt \
        >"$WORK/setup.log" 2>&1 || { tail -n 30 "$WORK/setup.log" >&2; fail "runtime-setup.sh failed in the root (log above)"; }
    umount_last
    rm -rf "$ROOT/tmp/vecshard-setup"
    # shellcheck disable=SC2016  # ${Package} is dpkg-query's, not the shell's
    say "root: installed $(chroot "$ROOT" dpkg-query -W -f='${Package}\n' | wc -l) packages in all; caching it"
    mkdir -p "$CACHE_DIR"
    rm -f "$CACHE_DIR"/rootfs-*.tar
    tar -C "$ROOT" --numeric-owner -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
fi

# ------------------------------------------------------------------ 2. binaries
# As the Dockerfile's COPY: root-owned, mode kept (0755 from the linker).
for b in "${BINS[@]}"; do
    install -m 0755 "$BUILD/$b" "$ROOT/usr/local/bin/$b"
done
say "binaries: ${BINS[*]} in /usr/local/bin"

# ------------------------------------------------------------------ 3. libraries, --version, user
mount_proc
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
done
[ "$(chroot "$ROOT" id -u vecshard):$(chroot "$ROOT" id -g vecshard)" = "$USERSPEC" ] ||
    fail "the root has no user vecshard with uid:gid $USERSPEC"
in_root sh -c 'touch /data/.w && rm /data/.w' || fail "/data is not writable by $USERSPEC"
say "user: vecshard is $USERSPEC and can write /data"

# ------------------------------------------------------------------ 4. smoke
install -d -o 10001 -g 10001 "$SMOKE" "$SMOKE/node-0" "$ROOT$SMOKE"
mount --bind "$SMOKE" "$ROOT$SMOKE"
MOUNTS+=("$ROOT$SMOKE")
# cluster.sh runs $BUILD/vecshard-node and $BUILD/vecshard-router: wrappers
# that exec them inside the root as the image's user (same pid throughout).
install -d "$WORK/bin"
for b in vecshard-node vecshard-router; do
    printf '#!/bin/sh\nexec chroot --userspec=%s %s /usr/local/bin/%s "$@"\n' "$USERSPEC" "$ROOT" "$b" >"$WORK/bin/$b"
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
