#!/usr/bin/env bash
# cluster.sh — a whole vecshard cluster on loopback, for development and the
# demo: one etcd, N vecshard-node and one vecshard-router, each on a free
# 127.0.0.1 port, with every byte of state under one directory.
#
#   cluster.sh start  --dir DIR [--nodes N] [options]   start, wait until healthy,
#                                                       print the router's address
#   cluster.sh status --dir DIR                         each process alive/dead + address
#   cluster.sh stop   --dir DIR                         stop what `start` recorded
#
# DIR layout (docs/local-cluster.md):
#   DIR/procs           one line per started process: name pid starttime addr
#   DIR/router.addr     the router's host:port (the CLI's --router)
#   DIR/etcd.addr       etcd's client URL
#   DIR/<node-id>.coordinator  with --coordinators: the node's VecShard port
#   DIR/etcd/           etcd's data dir
#   DIR/<node-id>/      a node's data dir (node-0, node-1, ...)
#   DIR/<name>.log      each process's stdout + stderr
#
# Only processes recorded in DIR/procs are ever signalled, and only while the
# pid still belongs to the process that was started (its start time in
# /proc/<pid>/stat must match), so a recycled pid is never hit. A start that
# fails stops whatever it had started; `start` refuses a DIR whose recorded
# processes still run.
#
# Ports: the nodes and the router bind port 0 and print the port they got
# ("listening on host:port", docs/node.md); etcd cannot, so its two ports are
# found by binding port 0 with python3 and retried on a lost race.
#
# Start-up: the nodes are started together and waited on together: each
# binds at once, then opens its replicas (Health/Check NOT_SERVING) and
# answers SERVING once they are open; --timeout (default 120 s) bounds the
# whole wait, not each node. Stop: SIGTERM to all nodes at once; a node
# snapshots its replicas before it exits, so --grace (default 90 s) is
# generous before SIGKILL.
#
# Exit status: 0 ok; 1 failure (start/stop) or some process not running
# (status); 2 bad usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${VS_BUILD:-$REPO/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
PYTHON=${PYTHON:-/usr/bin/python3}

NODES=3
DIR=
PREFIX=/vecshard
LEASE_TTL=5
FSYNC=always
NODE_THREADS=4
ROUTER_THREADS=8
START_TIMEOUT=120
COORDINATORS=0 # --coordinators: every node also serves VecShard (--coordinator-listen)
STOP_GRACE=90

usage() {
    cat >&2 <<EOF
usage: $0 start  --dir DIR [--nodes N] [--build DIR] [--etcd-prefix P] [--lease-ttl S]
                          [--fsync always|batch|none] [--node-threads T] [--router-threads T]
                          [--timeout S] [--coordinators]
       $0 status --dir DIR
       $0 stop   --dir DIR [--grace S]
EOF
    exit 2
}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

log() {
    echo "cluster.sh: $*" >&2
}

# ------------------------------------------------------------------ arguments
[ $# -ge 1 ] || usage
CMD=$1
shift
while [ $# -gt 0 ]; do
    case $1 in
    --dir) DIR=${2:?}; shift 2 ;;
    --nodes) NODES=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    --etcd-prefix) PREFIX=${2:?}; shift 2 ;;
    --lease-ttl) LEASE_TTL=${2:?}; shift 2 ;;
    --fsync) FSYNC=${2:?}; shift 2 ;;
    --node-threads) NODE_THREADS=${2:?}; shift 2 ;;
    --router-threads) ROUTER_THREADS=${2:?}; shift 2 ;;
    --timeout) START_TIMEOUT=${2:?}; shift 2 ;;
    --coordinators) COORDINATORS=1; shift ;;
    --grace) STOP_GRACE=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "cluster.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
[ -n "$DIR" ] || { echo "cluster.sh: --dir is required" >&2; usage; }
for pair in nodes:NODES lease-ttl:LEASE_TTL node-threads:NODE_THREADS \
    router-threads:ROUTER_THREADS timeout:START_TIMEOUT grace:STOP_GRACE; do
    v=${pair#*:}
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "cluster.sh: --${pair%%:*} must be a positive integer, not '${!v}'" >&2
        exit 2
    fi
done
PROCS="$DIR/procs"

# ------------------------------------------------------------------ process records
# starttime PID: field 22 of /proc/PID/stat (clock ticks since boot), or ''.
# The command name in field 2 may hold spaces and parentheses, so the fields
# are counted after its closing parenthesis.
starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*") "}
    # after "comm) ": field 3 is the first word; starttime is field 22
    # shellcheck disable=SC2086  # split into fields on purpose
    set -- $stat
    echo "${20}"
}

# alive PID STARTTIME: the recorded process still runs (pid not recycled; a
# zombie counts as gone).
alive() {
    local st state
    st=$(starttime "$1")
    [ -n "$st" ] && [ "$st" = "$2" ] || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ "$state" != Z ]
}

# record NAME PID ADDR: appends a line to DIR/procs (written before waiting
# for health, so a failed start can stop it).
record() {
    local st
    st=$(starttime "$2")
    [ -n "$st" ] || st=0
    echo "$1 $2 $st $3" >>"$PROCS"
}

# set_addr NAME ADDR: fills in the address of a recorded process.
set_addr() {
    local tmp="$PROCS.tmp"
    awk -v n="$1" -v a="$2" '$1 == n { $4 = a } { print }' "$PROCS" >"$tmp"
    mv "$tmp" "$PROCS"
}

any_alive() {
    local name pid st addr
    [ -f "$PROCS" ] || return 1
    while read -r name pid st addr; do
        alive "$pid" "$st" && return 0
    done <"$PROCS"
    return 1
}

# stop_group NAME...: TERM to each named live process, wait up to
# STOP_GRACE seconds for all of them, KILL the rest.
stop_group() {
    local name pid st addr want left i
    local -a pids=() sts=() names=()
    while read -r name pid st addr; do
        for want in "$@"; do
            # shellcheck disable=SC2053  # $want is a glob pattern
            if [[ $name == $want ]] && alive "$pid" "$st"; then
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$pid") sts+=("$st") names+=("$name")
            fi
        done
    done <"$PROCS"
    [ ${#pids[@]} -gt 0 ] || return 0
    for ((i = 0; i < STOP_GRACE * 10; i++)); do
        left=0
        for j in "${!pids[@]}"; do
            alive "${pids[$j]}" "${sts[$j]}" && left=1
        done
        [ $left = 0 ] && return 0
        sleep 0.1
    done
    for j in "${!pids[@]}"; do
        if alive "${pids[$j]}" "${sts[$j]}"; then
            log "${names[$j]} (pid ${pids[$j]}) did not stop within ${STOP_GRACE} s of SIGTERM: SIGKILL"
            kill -KILL "${pids[$j]}" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 50; i++)); do
        left=0
        for j in "${!pids[@]}"; do
            alive "${pids[$j]}" "${sts[$j]}" && left=1
        done
        [ $left = 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# stop_all: the router first (it calls the nodes), then the nodes (they
# revoke their leases in etcd on SIGTERM), then etcd.
stop_all() {
    local rc=0
    [ -f "$PROCS" ] || return 0
    stop_group 'router*' || rc=1
    stop_group 'node-*' || rc=1
    stop_group etcd || rc=1
    return $rc
}

# ------------------------------------------------------------------ probes
free_ports() {
    "$PYTHON" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# etcd_query URL health|nodes: through etcd's JSON gateway (python3 urllib,
# no proxy): exit 0 if etcd is healthy / print the node ids under
# PREFIX/nodes/, one per line.
etcd_query() {
    "$PYTHON" - "$1" "$2" "$PREFIX/nodes/" <<'PY'
import base64, json, sys, urllib.request
url, what, prefix = sys.argv[1:4]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    if what == "health":
        with opener.open(url + "/health", timeout=1) as r:
            sys.exit(0 if json.loads(r.read()).get("health") == "true" else 1)
    end = bytearray(prefix.encode())
    end[-1] += 1
    body = {"key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(bytes(end)).decode(), "keys_only": True}
    req = urllib.request.Request(url + "/v3/kv/range", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=2) as r:
        for kv in json.loads(r.read()).get("kvs", []):
            print(base64.b64decode(kv["key"]).decode()[len(prefix):])
except (OSError, ValueError):
    sys.exit(1)
PY
}

etcd_healthy() {
    etcd_query "$1" health
}

# registered_nodes ETCD_URL: the node ids under PREFIX/nodes/, one per line.
registered_nodes() {
    etcd_query "$1" nodes || true
}

# router_ready ADDR N: Health/Check answers SERVING and the router's
# ClusterStatus lists at least N live nodes (so a create right after start
# sees them). Raw protobuf bytes: no generated stubs needed.
router_ready() {
    "$PYTHON" - "$1" "$2" <<'PY'
import sys
import grpc
addr, want = sys.argv[1], int(sys.argv[2])
ident = lambda b: b
with grpc.insecure_channel(addr) as ch:
    try:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", ident, ident)
        if check(b"", timeout=1) != b"\x08\x01":          # status: SERVING
            sys.exit(1)
        status = ch.unary_unary("/vecshard.v1.VecShard/ClusterStatus", ident, ident)
        reply = status(b"", timeout=2)
    except grpc.RpcError:
        sys.exit(1)

def fields(buf):
    """(field number, value) pairs of a protobuf message (varint / bytes only)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wt)
        yield num, val

def varint(buf, i):
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i

# ClusterStatusResponse.nodes = 1; NodeInfo.alive = 3
live = sum(1 for num, node in fields(reply) if num == 1
           and any(n == 3 and v == 1 for n, v in fields(node)))
sys.exit(0 if live >= want else 1)
PY
}

# wait_serving NAME=PID=ADDR...: polls Health/Check of every address until
# all answer SERVING (exit 0), one process exits, or START_TIMEOUT passes
# (exit 1, naming the ones not serving). Raw protobuf bytes, no stubs.
wait_serving() {
    "$PYTHON" - "$START_TIMEOUT" "$@" <<'PY'
import sys, time
import grpc
timeout, procs = float(sys.argv[1]), [a.split("=", 2) for a in sys.argv[2:]]
ident = lambda b: b

def dead(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            return any(l.startswith("State:") and "Z" in l.split()[1] for l in f)
    except OSError:
        return True

chans = {name: grpc.insecure_channel(addr) for name, _, addr in procs}
waiting = {name for name, _, _ in procs}
deadline = time.monotonic() + timeout
while waiting and time.monotonic() < deadline:
    for name, pid, addr in procs:
        if name not in waiting:
            continue
        if dead(pid):
            print("%s (pid %s) exited during start-up" % (name, pid), file=sys.stderr)
            sys.exit(1)
        try:
            check = chans[name].unary_unary("/grpc.health.v1.Health/Check", ident, ident)
            if check(b"", timeout=1) == b"\x08\x01":          # status: SERVING
                waiting.discard(name)
        except grpc.RpcError:
            pass
    if waiting:
        time.sleep(0.1)
if waiting:
    print("not SERVING within %.0f s: %s" % (timeout, " ".join(sorted(waiting))), file=sys.stderr)
    sys.exit(1)
PY
}

# launch NAME LOG CMD...: starts CMD in its own session (so a terminal's
# Ctrl-C does not reach it), stdin /dev/null, output appended to LOG.
# setsid execs in place (the child is not a process-group leader), so $! is
# the program's pid. Sets LAUNCHED_PID.
launch() {
    local name=$1 logf=$2
    shift 2
    echo "==== cluster.sh: $(date -u +%FT%TZ) start $name: $*" >>"$logf"
    setsid "$@" </dev/null >>"$logf" 2>&1 &
    LAUNCHED_PID=$!
    record "$name" "$LAUNCHED_PID" -
}

# wait_listening NAME PID LOGFILE OFFSET: waits for the "listening on" line
# written after byte OFFSET of LOGFILE; prints the address.
wait_listening() {
    local name=$1 pid=$2 logf=$3 off=$4 addr i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        addr=$(tail -c +"$((off + 1))" "$logf" | sed -n 's/^listening on \([^ ]*:[0-9][0-9]*\)$/\1/p' | tail -n 1)
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { log "$name exited during start-up; log tail:"; tail -n 20 "$logf" >&2; return 1; }
        sleep 0.1
    done
    log "$name printed no 'listening on' line within ${START_TIMEOUT} s; log tail:"
    tail -n 20 "$logf" >&2
    return 1
}

filesize() {
    stat -c %s "$1" 2>/dev/null || echo 0
}

# ------------------------------------------------------------------ start
start_etcd() {
    local client peer url i
    for _ in 1 2 3 4; do
        read -r client peer <<<"$(free_ports 2)"
        url="http://127.0.0.1:$client"
        launch etcd "$DIR/etcd.log" "$ETCD_BIN" --name vecshard-local --data-dir "$DIR/etcd" \
            --listen-client-urls "$url" --advertise-client-urls "$url" \
            --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "vecshard-local=http://127.0.0.1:$peer" \
            --experimental-watch-progress-notify-interval 5s
        set_addr etcd "$url"
        for ((i = 0; i < START_TIMEOUT * 10; i++)); do
            if etcd_healthy "$url"; then
                echo "$url" >"$DIR/etcd.addr"
                return 0
            fi
            kill -0 "$LAUNCHED_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$LAUNCHED_PID" 2>/dev/null; then
            log "etcd not healthy within ${START_TIMEOUT} s; log tail:"
            tail -n 20 "$DIR/etcd.log" >&2
            return 1
        fi
        if ! grep -qi "address already in use" "$DIR/etcd.log"; then
            log "etcd exited during start-up; log tail:"
            tail -n 20 "$DIR/etcd.log" >&2
            return 1
        fi
        log "etcd lost the race for port $client or $peer; trying other ports"
        # forget the dead attempt so stop/status do not list it
        grep -v '^etcd ' "$PROCS" >"$PROCS.tmp" || true
        mv "$PROCS.tmp" "$PROCS"
        rm -rf "$DIR/etcd"
    done
    return 1
}

# start_nodes ETCD_URL: launches node-0..node-(N-1) together, waits for each
# one's "listening on" line (printed at bind, before its replicas load), then
# for all of them to answer Health/Check SERVING.
start_nodes() {
    local etcd_url=$1 n id logf addr
    local -a pids=() offs=() serving=()
    for ((n = 0; n < NODES; n++)); do
        id=node-$n
        logf="$DIR/$id.log"
        mkdir -p "$DIR/$id"
        offs[n]=$(filesize "$logf")
        local -a coord=()
        [ "$COORDINATORS" = 1 ] && coord=(--coordinator-listen 127.0.0.1:0)
        launch "$id" "$logf" "$BUILD/vecshard-node" --listen 127.0.0.1:0 --node-id "$id" \
            --data-dir "$DIR/$id" --etcd "$etcd_url" --etcd-prefix "$PREFIX" --fsync "$FSYNC" \
            --threads "$NODE_THREADS" --lease-ttl "$LEASE_TTL" "${coord[@]}"
        pids[n]=$LAUNCHED_PID
    done
    for ((n = 0; n < NODES; n++)); do
        id=node-$n
        addr=$(wait_listening "$id" "${pids[n]}" "$DIR/$id.log" "${offs[n]}") || return 1
        set_addr "$id" "$addr"
        serving+=("$id=${pids[n]}=$addr")
    done
    wait_serving "${serving[@]}" || { log "nodes did not become healthy (logs in $DIR/node-*.log)"; return 1; }
    [ "$COORDINATORS" = 1 ] || return 0
    for ((n = 0; n < NODES; n++)); do
        wait_coordinator "node-$n" "${pids[n]}" "${offs[n]}" || return 1
    done
}

# wait_coordinator ID PID OFF: waits for the node's "coordinator listening"
# log line (logged once it has registered) and writes DIR/ID.coordinator.
wait_coordinator() {
    local id=$1 pid=$2 off=$3 addr i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        addr=$(tail -c +"$((off + 1))" "$DIR/$id.log" |
            sed -n 's/.*msg="coordinator listening" addr=\([^ ]*:[0-9][0-9]*\).*/\1/p' | tail -n 1)
        if [ -n "$addr" ]; then
            echo "$addr" >"$DIR/$id.coordinator"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { log "$id exited during start-up"; return 1; }
        sleep 0.1
    done
    log "$id logged no coordinator address within ${START_TIMEOUT} s"
    return 1
}

start_router() {
    local etcd_url=$1 logf="$DIR/router.log" off addr
    off=$(filesize "$logf")
    launch router "$logf" "$BUILD/vecshard-router" --listen 127.0.0.1:0 --etcd "$etcd_url" \
        --etcd-prefix "$PREFIX" --threads "$ROUTER_THREADS"
    addr=$(wait_listening router "$LAUNCHED_PID" "$logf" "$off") || return 1
    set_addr router "$addr"
    ROUTER_ADDR=$addr
}

# wait_healthy ETCD_URL: every node registered, the router serving and
# seeing all of them.
wait_healthy() {
    local url=$1 i got missing
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        got=$(registered_nodes "$url" | sort | tr '\n' ' ')
        missing=
        for ((n = 0; n < NODES; n++)); do
            [[ " $got " == *" node-$n "* ]] || missing="$missing node-$n"
        done
        if [ -z "$missing" ] && router_ready "$ROUTER_ADDR" "$NODES"; then
            return 0
        fi
        sleep 0.2
    done
    if [ -n "$missing" ]; then
        log "not registered in etcd within ${START_TIMEOUT} s:$missing"
    else
        log "the router at $ROUTER_ADDR does not answer or does not see all $NODES nodes"
        tail -n 20 "$DIR/router.log" >&2
    fi
    return 1
}

do_start() {
    local bin url
    for bin in "$ETCD_BIN" "$BUILD/vecshard-node" "$BUILD/vecshard-router"; do
        [ -x "$bin" ] || die "$bin is missing (run make)"
    done
    if any_alive; then
        die "$DIR already has a running cluster (cluster.sh status --dir $DIR); stop it first"
    fi
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    PROCS="$DIR/procs"
    # A stopped cluster's dir is reused: its data stays, the records go.
    rm -f "$PROCS" "$DIR/router.addr" "$DIR/etcd.addr" "$DIR"/node-*.coordinator
    : >"$PROCS"

    trap 'log "start failed; stopping what was started"; stop_all || true; rm -f "$DIR/router.addr"' EXIT
    trap 'exit 1' INT TERM HUP
    start_etcd || exit 1
    url=$(cat "$DIR/etcd.addr")
    start_nodes "$url" || exit 1
    start_router "$url" || exit 1
    wait_healthy "$url" || exit 1
    trap - EXIT INT TERM HUP

    echo "$ROUTER_ADDR" >"$DIR/router.addr"
    log "etcd $url, $NODES nodes, router $ROUTER_ADDR (logs and data in $DIR)"
    echo "$ROUTER_ADDR"
}

# ------------------------------------------------------------------ status, stop
do_status() {
    local name pid st addr state rc=0
    [ -f "$PROCS" ] || die "no cluster recorded in $DIR ($PROCS missing)"
    printf '%-10s %-8s %-6s %s\n' NAME PID STATE ADDRESS
    while read -r name pid st addr; do
        if alive "$pid" "$st"; then
            state=alive
        else
            state=dead
            rc=1
        fi
        printf '%-10s %-8s %-6s %s\n' "$name" "$pid" "$state" "$addr"
    done <"$PROCS"
    return $rc
}

do_stop() {
    [ -f "$PROCS" ] || { log "no cluster recorded in $DIR; nothing to stop"; return 0; }
    if ! stop_all; then
        die "some processes of $DIR did not exit even after SIGKILL"
    fi
    rm -f "$DIR/router.addr"
    log "stopped the cluster in $DIR"
}

case $CMD in
start) do_start ;;
status) do_status ;;
stop) do_stop ;;
*) usage ;;
esac
