"""harness.py — real etcd and real vecshard-node processes for integration tests.

A Cluster owns one temporary directory, one etcd on loopback and any number
of vecshard-node processes, each with its own data dir, log file and port:

    with Cluster(nodes=1, lease_ttl=3) as c:
        c.create_collection("docs", dim=64)          # straight into etcd
        c.wait_shards(c.nodes[0], "docs", [0])       # ShardStatus says READY
        stub = c.nodes[0].stub()                     # vecshard.v1.ShardNode
        c.nodes[0].kill9(); c.nodes[0].start()       # same dir, same port

Ports come from binding port 0 on 127.0.0.1 and closing the socket; a process
that loses the race for its port is started again on fresh ones (first start
only: a restart keeps its port, as a restarted pod keeps its address).

Collections and shard maps are written into etcd through its JSON gateway
(urllib + base64, docs/design.md §3 layout) because the router, which will own those
keys, does not exist yet. Writing them by hand also lets tests build states a
router would never produce (a shard placed on a node that is not running, a
bumped epoch).

Cleanup. Everything started is stopped by pid, whatever happens: Cluster is
a context manager (its __exit__ runs on failure too); every live child and
temp dir is also in a module registry that an atexit hook and a SIGTERM /
SIGHUP handler empty; and each child gets PR_SET_PDEATHSIG=SIGKILL so a
SIGKILLed test runner still takes its children with it. PDEATHSIG fires when
the *thread* that forked exits, so processes are started from the main
thread only. Each process's stdout+stderr go to <tmp>/<name>.log (appended
across restarts, with a marker line); the tails are printed when a test
fails (Cluster.__exit__ on an exception, ClusterTestCase on a failure).
Set VS_KEEP_TMP=1 to keep the directory for a post-mortem.

Environment: VS_BUILD (default <repo>/build) locates vecshard-node and the
generated Python stubs (VS_BUILD/gen/python); ETCD_BIN (default
/usr/bin/etcd); VS_NODE_BIN overrides the node binary.

Run as a script it starts a cluster around a command (used by
scripts/bench_node.sh):

    harness.py run [--nodes N] [--collection NAME,DIM[,METRIC[,M[,EFC[,EF[,SHARDS]]]]]]
                   [--fsync MODE] [--lease-ttl S] [--threads T] -- CMD ARG...

where {addr}, {addrs}, {etcd}, {collection}, {epoch} in the arguments are
replaced; the exit status is the command's.
"""
import atexit
import base64
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("VS_BUILD", os.path.join(REPO, "build")))
GEN_PY = os.path.join(BUILD, "gen", "python")
if GEN_PY not in sys.path:
    sys.path.insert(0, GEN_PY)

import grpc  # noqa: E402  (needs the path above for the stubs below)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from vecshard.v1 import common_pb2, shard_node_pb2, shard_node_pb2_grpc  # noqa: E402

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
NODE_BIN = os.environ.get("VS_NODE_BIN", os.path.join(BUILD, "vecshard-node"))
DEFAULT_PREFIX = "/vecshard"
MAX_MSG = 64 << 20
TAIL_LINES = 40

READY = shard_node_pb2.REPLICA_STATE_READY


class HarnessError(Exception):
    """A process did not start, did not become healthy, or etcd refused a call."""


# ------------------------------------------------------------------ registry
# Every live child (pid -> Popen) and every temp dir this module created.
# Read by the atexit hook and the signal handlers; guarded by _lock.
_lock = threading.Lock()
_live = {}
_dirs = set()
_handlers_installed = False


def _kill_all_registered():
    """SIGKILLs and reaps every registered child, removes every temp dir."""
    with _lock:
        procs = list(_live.values())
        _live.clear()
        dirs = list(_dirs)
        _dirs.clear()
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if os.environ.get("VS_KEEP_TMP") != "1":
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, _frame):
    """SIGTERM/SIGHUP: clean up, then die by the same signal."""
    _kill_all_registered()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    """Installs the atexit hook and the signal handlers once (main thread only)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_kill_all_registered)
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _on_signal)


# Children die with the harness (PR_SET_PDEATHSIG=SIGKILL) even when it is
# SIGKILLed. util-linux setpriv sets it and execs the program under the same
# pid; a preexec_fn is the fallback (Python warns it can deadlock in a
# process with threads, and gRPC has threads, hence the preference).
_SETPRIV = shutil.which("setpriv")
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup(parent):
    """preexec_fn fallback: die with the parent (SIGKILL)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def free_ports(n):
    """n distinct free loopback TCP ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path, n=TAIL_LINES):
    """The last n lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * n))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-n:])


# ------------------------------------------------------------------ --http endpoints
def http_get(addr, path, timeout=5):
    """GET http://<addr><path> of a --http endpoint: (status, body text, Content-Type).
    No proxy; a refused connection raises OSError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open("http://%s%s" % (addr, path), timeout=timeout) as r:
            return r.status, r.read().decode("utf-8"), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers.get("Content-Type")


def _unescape(v):
    """A label value of the text format with its escapes (backslash, quote, newline) undone."""
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_metrics(text):
    """Prometheus text format -> {(sample name, frozenset of (label, value))): float}
    plus the declared families as .families {name: type}. Enough for vecshard's
    output: one sample a line, no timestamps."""
    out = MetricSamples()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            out.families[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = frozenset()
        if "{" in head:
            name, rest = head.split("{", 1)
            pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', rest[:-1])
            labels = frozenset((k, _unescape(v)) for k, v in pairs)
        else:
            name = head
        out[(name, labels)] = float(value)
    return out


class MetricSamples(dict):
    """parse_metrics' result: samples by (name, labels), and `families`."""

    def __init__(self):
        super().__init__()
        self.families = {}

    def get1(self, name, **labels):
        """The value of the one sample of `name` with exactly these labels (KeyError if none)."""
        return self[(name, frozenset(labels.items()))]

    def total(self, name, **labels):
        """Sum of the samples of `name` whose labels include these (0 if none)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and want <= ls)


# ------------------------------------------------------------------ processes
class Proc:
    """One child process with its log file; start/kill9/stop by pid."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = log_path
        self.popen = None
        self.starts = 0

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def spawn(self, argv, env=None, inherit_env=True, cwd=None):
        """Starts argv with stdout+stderr appended to the log. env is added to
        this process's environment, or (inherit_env=False) is the whole
        environment, as a container's is. cwd: the working directory."""
        if self.alive():
            raise HarnessError("%s is already running (pid %d)" % (self.name, self.pid))
        _install_handlers()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(("==== harness: start #%d: %s\n" % (self.starts, " ".join(argv))).encode())
            log.flush()
            full_env = dict(os.environ) if inherit_env else {}
            full_env.update(env or {})
            if _SETPRIV:
                self.popen = subprocess.Popen(
                    [_SETPRIV, "--pdeathsig", "KILL", "--"] + argv, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
            else:
                self.popen = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=full_env, cwd=cwd,
                    preexec_fn=lambda parent=os.getpid(): _child_setup(parent))
        with _lock:
            _live[self.popen.pid] = self.popen

    def _forget(self):
        with _lock:
            _live.pop(self.popen.pid, None)

    def kill9(self):
        """SIGKILL and reap (a crash: nothing is flushed, nothing is deregistered)."""
        if not self.popen:
            return
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._forget()
        self._mark("killed with SIGKILL")

    def stop(self, grace=10.0):
        """SIGTERM, wait up to grace seconds, then SIGKILL. Returns the exit status."""
        if not self.popen:
            return None
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
                self._mark("did not stop within %.0f s of SIGTERM: SIGKILLed" % grace)
        self._forget()
        return self.popen.returncode

    def _mark(self, what):
        try:
            with open(self.log_path, "ab") as log:
                log.write(("==== harness: %s %s\n" % (self.name, what)).encode())
        except OSError:
            pass

    def tail(self, n=TAIL_LINES):
        return tail(self.log_path, n)


# ------------------------------------------------------------------ etcd
def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def _prefix_end(prefix):
    """range_end covering every key that starts with prefix (last byte + 1)."""
    b = bytearray(prefix.encode())
    b[-1] += 1
    return bytes(b)


class Etcd:
    """A throw-away single-member etcd on loopback, with a small v3 JSON client."""

    def __init__(self, root, tls=None):
        self.root = root
        self.data_dir = os.path.join(root, "etcd-data")
        self.proc = Proc("etcd", os.path.join(root, "etcd.log"))
        self.client_port = self.peer_port = None
        # tls: dev_certs' {"ca", "cert", "key"}: etcd serves https with it and
        # requires client certificates of the CA (--client-cert-auth); the
        # harness's own requests present the same certificate.
        self.tls = tls
        handlers = [urllib.request.ProxyHandler({})]
        if tls is not None:
            import ssl
            ctx = ssl.create_default_context(cafile=tls["ca"])
            ctx.load_cert_chain(tls["cert"], tls["key"])
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.client_port)

    def client_args(self):
        """--etcd-cacert/--etcd-cert/--etcd-key of a node or router ([] without TLS)."""
        if self.tls is None:
            return []
        return ["--etcd-cacert", self.tls["ca"], "--etcd-cert", self.tls["cert"],
                "--etcd-key", self.tls["key"]]

    def start(self, attempts=4):
        """Starts on fresh ports (retrying on a lost port race); waits for /health."""
        for _ in range(attempts):
            self.client_port, self.peer_port = free_ports(2)
            if self._spawn():
                return
            shutil.rmtree(self.data_dir, ignore_errors=True)
        raise HarnessError("etcd did not become healthy; log tail:\n" + self.proc.tail())

    def restart(self):
        """Stops and starts again on the same ports and data (an etcd outage)."""
        self.stop()
        self.start_again()

    def start_again(self):
        """Starts again on the same ports and data after stop()."""
        if not self._spawn():
            raise HarnessError("etcd did not come back; log tail:\n" + self.proc.tail())

    def _spawn(self):
        """Starts etcd on the current ports; True once healthy (else stopped)."""
        peer = "http://127.0.0.1:%d" % self.peer_port
        self.proc.spawn([
            ETCD_BIN, "--name", "n1", "--data-dir", self.data_dir,
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "n1=" + peer,
            "--experimental-watch-progress-notify-interval", "1s"] + (
                [] if self.tls is None else
                ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"],
                 "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.alive():
            if self.healthy():
                return True
            time.sleep(0.1)
        self.proc.stop()
        return False

    def healthy(self):
        try:
            with self._opener.open(self.url + "/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self):
        self.proc.stop()

    def call(self, path, body, timeout=5):
        """POSTs body (a dict) to /v3/<path>; returns the decoded reply."""
        req = urllib.request.Request(self.url + "/v3/" + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise HarnessError("etcd %s: HTTP %d %s" % (path, e.code, e.read()[:300]))

    @staticmethod
    def _kv(kv):
        return {"key": base64.b64decode(kv["key"]).decode(),
                "value": base64.b64decode(kv.get("value", "")),
                "create_revision": int(kv.get("create_revision", 0)),
                "mod_revision": int(kv.get("mod_revision", 0)),
                "version": int(kv.get("version", 0)),
                "lease": int(kv.get("lease", 0))}

    def put(self, key, value, lease=0):
        """Puts value (bytes, str, or anything else as JSON). Returns the revision."""
        if not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("kv/put", body)["header"]["revision"])

    def get(self, key):
        """The key as a dict (key, value bytes, revisions, lease), or None."""
        kvs = self.call("kv/range", {"key": _b64(key)}).get("kvs", [])
        return self._kv(kvs[0]) if kvs else None

    def get_json(self, key):
        kv = self.get(key)
        return json.loads(kv["value"]) if kv else None

    def range_prefix(self, prefix):
        r = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return [self._kv(kv) for kv in r.get("kvs", [])]

    def delete(self, key, prefix=False):
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(_prefix_end(key))
        return int(self.call("kv/deleterange", body).get("deleted", 0))

    def revision(self):
        return int(self.call("kv/range", {"key": _b64("\0")})["header"]["revision"])


# ------------------------------------------------------------------ nodes
def tls_credentials(tls):
    """grpc channel credentials from tls: a dict of PEM file paths "ca"
    (verifies the server; None: the system roots) and "cert" + "key" (the
    client certificate; optional)."""
    def read(k):
        if not tls.get(k):
            return None
        with open(tls[k], "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(root_certificates=read("ca"), private_key=read("key"),
                                        certificate_chain=read("cert"))


def dev_certs(directory, *names):
    """scripts/dev_certs.sh into directory: {name: {"ca", "cert", "key"}}
    for every name (one CA per directory; an existing name is renewed)."""
    subprocess.run([os.path.join(REPO, "scripts", "dev_certs.sh"), directory] + list(names),
                   check=True, stdout=subprocess.DEVNULL)
    return {n: {"ca": os.path.join(directory, "ca.pem"),
                "cert": os.path.join(directory, n + ".pem"),
                "key": os.path.join(directory, n + ".key")} for n in names}


def tls_args(files):
    """--tls-cert/--tls-key/--tls-ca of a node or router from dev_certs' dict."""
    return ["--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-ca", files["ca"]]


def channel(addr, tls=None):
    """A channel with large messages, no retries and fast reconnects;
    TLS with tls (tls_credentials) when given."""
    opts = [
        ("grpc.max_receive_message_length", MAX_MSG),
        ("grpc.max_send_message_length", -1),
        ("grpc.enable_retries", 0),
        # Reconnect fast after a restart (the default backoff starts at 1 s
        # and grows to minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000)]
    if tls is None:
        return grpc.insecure_channel(addr, options=opts)
    return grpc.secure_channel(addr, tls_credentials(tls), options=opts)


class Server:
    """A vecshard server process (node or router): fixed name, log in the
    cluster folder, loopback port chosen at the first start and kept across
    restarts. Subclasses give argv() and stub()."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.proc = Proc(name, os.path.join(cluster.root, name + ".log"))
        self.port = None
        self.http_port = None  # set by subclasses started with --http
        self._channel = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _start(self, binary, spawn_and_wait):
        """Runs spawn_and_wait() (spawn argv(), wait until up; HarnessError if
        not). A first start that loses the race for its free port is retried
        on a fresh one."""
        if not os.path.isfile(binary):
            raise HarnessError("%s is missing (make %s)" % (binary, binary))
        first = self.port is None
        for attempt in range(4 if first else 1):
            if first:
                self.port = free_ports(1)[0]
                if getattr(self, "http", False):
                    self.http_port = None  # the --http port may be the one that lost the race
            self.close_channel()
            try:
                spawn_and_wait()
                return self
            except HarnessError:
                lost_race = not self.proc.alive() and "in use" in self.proc.tail(10).lower()
                self.proc.stop()
                if not (first and lost_race and attempt < 3):
                    raise
        raise HarnessError("unreachable")

    def _port_open(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def channel(self):
        if self._channel is None:
            self._channel = channel(self.addr, self.cluster.client_tls)
        return self._channel

    def close_channel(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def health(self, service=""):
        """Health/Check status, or None if the call failed."""
        try:
            return health_pb2_grpc.HealthStub(self.channel()).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=0.5).status
        except grpc.RpcError:
            return None

    def kill9(self):
        self.proc.kill9()
        self.close_channel()

    def stop(self):
        self.close_channel()
        return self.proc.stop()

    # --- the --http endpoint: http_port (Node(http=True) picks one) or
    # "--http host:port" in extra_args (routers, nodes given one explicitly)
    @property
    def http_addr(self):
        """The --http address (None when the server has none)."""
        if self.http_port is not None:
            return "127.0.0.1:%d" % self.http_port
        a = getattr(self, "extra_args", [])
        return a[a.index("--http") + 1] if "--http" in a else None

    def http_get(self, path, timeout=5):
        """GET path on the --http endpoint: (status, body text); status 0 if unreachable."""
        try:
            return http_get(self.http_addr, path, timeout)[:2]
        except OSError:
            return 0, ""

    def metrics_text(self):
        """This server's /metrics text (HarnessError unless 200)."""
        status, body = self.http_get("/metrics")
        if status != 200:
            raise HarnessError("%s /metrics answered %s: %s" % (self.name, status, body[:200]))
        return body

    def metrics(self):
        """This server's /metrics, parsed (parse_metrics: samples by (name, labels),
        .families, .get1, .total)."""
        return parse_metrics(self.metrics_text())

    def metric(self, name, **labels):
        """One sample of /metrics with exactly these labels, or None when absent."""
        return self.metrics().get((name, frozenset(labels.items())))


class Node(Server):
    """One vecshard-node process: fixed id, data dir and (after first start) port."""

    def __init__(self, cluster, node_id, fsync="always", lease_ttl=3, threads=4, extra_args=(),
                 http=False):
        super().__init__(cluster, node_id)
        self.http = http  # serve --http on a loopback port (self.http_port)
        self.node_id = node_id
        self.data_dir = os.path.join(cluster.root, node_id)
        self.fsync = fsync
        self.lease_ttl = lease_ttl
        self.threads = threads
        self.extra_args = list(extra_args)

    @property
    def key(self):
        return "%s/nodes/%s" % (self.cluster.prefix, self.node_id)

    def argv(self):
        return [NODE_BIN, "--listen", self.addr, "--advertise", self.addr,
                "--node-id", self.node_id, "--data-dir", self.data_dir,
                "--etcd", self.cluster.etcd.url, "--etcd-prefix", self.cluster.prefix,
                "--fsync", self.fsync, "--threads", str(self.threads),
                "--lease-ttl", str(self.lease_ttl)] + self.cluster.etcd.client_args() + (
                    ["--http", "127.0.0.1:%d" % self.http_port] if self.http else []
                ) + self.extra_args

    def start(self, timeout=30, registered=True):
        """Starts (or restarts after kill9/stop, same dir and port) and waits
        until Health/Check says SERVING and (unless registered=False, e.g.
        while etcd is down) the node key was (re)written."""
        def spawn_and_wait():
            if self.http and self.http_port is None:
                self.http_port = free_ports(1)[0]
            os.makedirs(self.data_dir, exist_ok=True)
            before = self.cluster.etcd.revision() if registered else None
            self.proc.spawn(self.argv())
            self._wait_up(before, timeout)
        return self._start(NODE_BIN, spawn_and_wait)

    def _wait_up(self, since_revision, timeout):
        """Waits for SERVING and for a write of the node key after
        since_revision (None: do not look at etcd)."""
        deadline = time.monotonic() + timeout
        healthy = registered = False
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise HarnessError("%s exited with status %s during start-up; log tail:\n%s" %
                                   (self.node_id, self.proc.popen.returncode, self.proc.tail()))
            # Probe the port first: a gRPC channel that met a refused
            # connection waits out its reconnect backoff.
            healthy = healthy or (self._port_open() and
                                  self.health() == health_pb2.HealthCheckResponse.SERVING)
            if healthy and since_revision is None:
                return
            if healthy and not registered:
                kv = self.cluster.etcd.get(self.key)
                registered = kv is not None and kv["mod_revision"] > since_revision
            if healthy and registered:
                return
            time.sleep(0.05)
        raise HarnessError("%s not up after %.0f s (healthy=%s, registered in etcd=%s); "
                           "log tail:\n%s" % (self.node_id, timeout, healthy, registered,
                                              self.proc.tail()))

    def stub(self):
        return shard_node_pb2_grpc.ShardNodeStub(self.channel())

    def restart(self):
        self.stop()
        return self.start()

    def shard_status(self, collection="", timeout=5):
        return self.stub().ShardStatus(
            shard_node_pb2.ShardStatusRequest(collection=collection), timeout=timeout).shards


# ------------------------------------------------------------------ cluster
class Cluster:
    """etcd + nodes + the temp dir holding all their state and logs."""

    def __init__(self, nodes=1, lease_ttl=3, fsync="always", threads=4,
                 prefix=DEFAULT_PREFIX, node_args=(), client_tls=None, etcd_tls=None):
        self.n_initial = nodes
        # TLS of the harness's own channels to nodes and routers (see
        # tls_credentials); None: plaintext.
        self.client_tls = client_tls
        self.etcd_tls = etcd_tls  # Etcd(tls=...): etcd over https with client certificates
        self.lease_ttl = lease_ttl
        self.fsync = fsync
        self.threads = threads
        self.prefix = prefix
        self.node_args = list(node_args)
        self.root = None
        self.etcd = None
        self.nodes = []
        self.saved_tails = ""

    # --- lifecycle
    def start(self):
        _install_handlers()
        self.root = tempfile.mkdtemp(prefix="vs-it-")
        with _lock:
            _dirs.add(self.root)
        try:
            self.etcd = Etcd(self.root, tls=self.etcd_tls)
            self.etcd.start()
            for _ in range(self.n_initial):
                self.add_node()
        except BaseException:
            self.print_tails()
            self.close(check=False)
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.print_tails()
        self.close(check=exc_type is None)
        return False

    def add_node(self, node_id=None, start=True, **kw):
        node_id = node_id or "node-%d" % len(self.nodes)
        opts = dict(fsync=self.fsync, lease_ttl=self.lease_ttl, threads=self.threads,
                    extra_args=self.node_args)
        opts.update(kw)
        n = Node(self, node_id, **opts)
        self.nodes.append(n)
        if start:
            n.start()
        return n

    def close(self, check=True):
        """Stops every node then etcd (by pid), keeps the log tails in memory,
        removes the temp dir. Idempotent. With check, a node that did not exit
        with status 0 on SIGTERM (a crash on shutdown, a sanitizer report)
        raises HarnessError once everything is cleaned up."""
        if self.root is None:
            return
        bad = []
        for n in self.nodes:
            try:
                was_running = n.proc.alive()
                rc = n.stop()
                if was_running and rc != 0:
                    bad.append("%s exited with status %s on SIGTERM" % (n.node_id, rc))
            except Exception:  # keep going: the rest must be stopped too
                n.proc.kill9()
        if self.etcd:
            self.etcd.stop()
        self.saved_tails = self.tails()
        with _lock:
            _dirs.discard(self.root)
        if os.environ.get("VS_KEEP_TMP") == "1":
            sys.stderr.write("harness: kept %s\n" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        if bad and check:
            raise HarnessError("; ".join(bad) + "; log tails:\n" + self.saved_tails)

    def tails(self, n=TAIL_LINES):
        """Tails of every process log (from disk, or as saved at close)."""
        if self.root is None:
            return self.saved_tails
        parts = []
        for p in [self.etcd.proc if self.etcd else None] + [x.proc for x in self.nodes]:
            if p is not None:
                parts.append("---- %s (%s, pid %s)\n%s" % (p.name, p.log_path, p.pid, p.tail(n)))
        return "\n".join(parts)

    def print_tails(self):
        sys.stderr.write("\n==== harness: process log tails\n%s\n==== end of tails\n" %
                         self.tails())
        sys.stderr.flush()

    # --- etcd layout (docs/design.md §3)
    def create_collection(self, name, dim, metric="l2", m=16, ef_construction=200, ef_search=64,
                          shards=1, replication_factor=1, placement=None, epoch=1):
        """Writes /collections/<name> and one /shards/<name>/<s> per shard.
        placement[s] lists shard s's replica node ids, primary first; default:
        shard s on node s % len(nodes). Returns the placement."""
        if placement is None:
            ids = [n.node_id for n in self.nodes] or ["node-0"]
            placement = [[ids[(s + r) % len(ids)] for r in range(replication_factor)]
                         for s in range(shards)]
        for s, replicas in enumerate(placement):
            self.set_shard(name, s, epoch, replicas)
        self.etcd.put("%s/collections/%s" % (self.prefix, name), {
            "name": name, "dim": dim, "metric": metric, "m": m,
            "ef_construction": ef_construction, "ef_search": ef_search, "shards": shards,
            "replication_factor": replication_factor,
            "created_at": int(time.time() * 1000)})
        return placement

    def set_shard(self, name, shard, epoch, replicas, in_sync=None, recovering=()):
        """Writes one shard entry; the first replica is the primary."""
        self.etcd.put("%s/shards/%s/%d" % (self.prefix, name, shard), {
            "epoch": epoch, "primary": replicas[0] if replicas else "",
            "replicas": list(replicas),
            "in_sync": list(replicas if in_sync is None else in_sync),
            "recovering": list(recovering)})

    def wait_shards(self, node, collection, shards, state=READY, epoch=None, timeout=20):
        """Waits until node's ShardStatus lists exactly `shards` of collection,
        all in `state` (and at `epoch` if given). Returns the status list."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = list(node.shard_status(collection))
            except grpc.RpcError as e:
                last = e
            else:
                if (sorted(s.shard for s in last) == sorted(shards) and
                        all(s.state == state for s in last) and
                        (epoch is None or all(s.epoch == epoch for s in last))):
                    return last
            time.sleep(0.05)
        raise HarnessError("%s: shards %s of %s not %s within %.0f s; last ShardStatus: %r" % (
            node.node_id, shards, collection, shard_node_pb2.ReplicaState.Name(state), timeout,
            last))


# ------------------------------------------------------------------ request helpers
def points(ids, vectors, payloads=None):
    """Point messages from parallel sequences (vectors: numpy rows or lists)."""
    out = []
    for i, pid in enumerate(ids):
        p = common_pb2.Point(id=int(pid), vector=[float(x) for x in vectors[i]])
        if payloads is not None:
            p.payload = payloads[i]
        out.append(p)
    return out


def write_request(collection, shard, epoch, pts=(), deletes=()):
    return shard_node_pb2.WriteRequest(
        collection=collection, shard=shard, epoch=epoch,
        batch=common_pb2.WriteBatch(upserts=list(pts), deletes=[int(d) for d in deletes]))


def search_request(collection, queries, k, ef=0, shards=(0,), with_payload=False,
                   with_vector=False):
    return shard_node_pb2.NodeSearchRequest(
        collection=collection, shards=list(shards),
        queries=[common_pb2.Query(vector=[float(x) for x in q]) for q in queries],
        k=k, ef=ef, with_payload=with_payload, with_vector=with_vector)


class ClusterTestCase(unittest.TestCase):
    """unittest base class: prints the clusters' log tails when a test fails.

    Subclasses keep their Cluster in `cls.cluster` (setUpClass) or
    `self.cluster` (setUp); tails are taken from disk while it runs, or from
    the copy saved when it was closed."""

    cluster = None

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.cluster is not None:
            sys.stderr.write("\n==== %s failed; process log tails:\n%s\n==== end of tails\n" %
                             (self.id(), self.cluster.tails()))
            sys.stderr.flush()
        return out


# ------------------------------------------------------------------ command line
def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="start etcd + vecshard-node(s) around a command")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--collection", help="NAME,DIM[,METRIC[,M[,EFC[,EF[,SHARDS]]]]]")
    run.add_argument("--fsync", default="always")
    run.add_argument("--lease-ttl", type=int, default=5)
    run.add_argument("--threads", type=int, default=4)
    run.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command given after --")
    with Cluster(nodes=a.nodes, lease_ttl=a.lease_ttl, fsync=a.fsync, threads=a.threads) as c:
        subst = {"addr": c.nodes[0].addr if c.nodes else "",
                 "addrs": ",".join(n.addr for n in c.nodes), "etcd": c.etcd.url,
                 "collection": "", "epoch": "1"}
        if a.collection:
            f = a.collection.split(",")
            spec = {"name": f[0], "dim": int(f[1])}
            for key, conv, i in (("metric", str, 2), ("m", int, 3), ("ef_construction", int, 4),
                                 ("ef_search", int, 5), ("shards", int, 6)):
                if len(f) > i:
                    spec[key] = conv(f[i])
            c.create_collection(**spec)
            shards = list(range(spec.get("shards", 1)))
            for n in c.nodes:
                mine = [s for s in shards if s % len(c.nodes) == c.nodes.index(n)]
                c.wait_shards(n, spec["name"], mine)
            subst["collection"] = spec["name"]
        cmd = [x.format(**subst) for x in command]
        sys.stderr.write("harness: etcd %s, nodes %s; running %s\n" %
                         (c.etcd.url, subst["addrs"], " ".join(cmd)))
        child = subprocess.Popen(cmd)  # output straight to ours
        with _lock:
            _live[child.pid] = child
        try:
            rc = child.wait()
        finally:
            with _lock:
                _live.pop(child.pid, None)
        if rc != 0:
            c.print_tails()
        return rc


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
