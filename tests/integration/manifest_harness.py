"""manifest_harness.py — the rendered Kubernetes manifests, run as local processes.

deploy/k8s is only proven by running what it says. This module renders an
overlay with `kubectl kustomize`, turns its StatefulSets and Deployments into
pods, and starts each pod's containers as local processes the way a kubelet
would build them, so that a wrong flag, port, path or address in a manifest
fails a test:

    objs = render("dev")                      # kubectl kustomize deploy/k8s/overlays/dev
    with LocalCluster(Manifests(objs)) as lc: # every pod started, readiness probes passed
        addr = lc.service_addr("vecshard-router", "grpc")

What is taken from the manifests, exactly as Kubernetes does it:
  - the pods: a StatefulSet's are <name>-0..N-1 (hostname = pod name,
    subdomain = its serviceName); a Deployment's <name>-<hash>-<i>;
  - each container's environment: service links (when enableServiceLinks is
    not false), then envFrom (ConfigMaps and Secrets, with prefix, in order),
    then env (value with $(VAR) expansion over what is defined before it;
    valueFrom fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef);
  - command + args with $(VAR) expanded over that environment ($$ is a
    literal $, an undefined reference stays as written);
  - readiness and liveness probes (httpGet and tcpSocket), ports by name or
    number.
What is mapped, because every pod runs on one machine:
  - the image's binaries to this build's: /usr/local/bin/vecshard-node ->
    $VS_BUILD/vecshard-node (and -router, vecshard), /usr/local/bin/etcd ->
    /usr/bin/etcd (IMAGE_BINS);
  - every declared containerPort of every pod to its own free loopback port;
    each host:port in args and env values is rewritten: a wildcard or
    loopback host means the container's own pod, <pod>.<subdomain>[.<ns>
    [.svc[.cluster.local]]] a pod by its DNS name (only when a headless
    Service of that name selects it), <service>[...] a Service (the port
    through targetPort to the first pod it selects). Anything else, or a
    port the target pod does not declare, is an error: a typo in a host name
    fails as it would in a cluster, and a port the pod binds without
    declaring it would collide between pods here;
  - each volumeMount's mountPath, in args and env values, to a directory of
    the pod under the temp dir (a PersistentVolumeClaim's data survives a
    container restart, as it does);
  - the working directory to the pod's own directory.
Exec lifecycle hooks run on request (LocalCluster.run_hook: a test runs a
node's preStop, mapped like its container). Not modelled: the image's own
environment beyond PATH and HOSTNAME, resource limits, security contexts,
scheduling.

Processes are harness.Proc children: logs under the temp dir, stopped by pid
on success and failure (LocalCluster is a context manager; the harness's
atexit hook and signal handlers cover the rest), SIGTERM then SIGKILL after
the pod's terminationGracePeriodSeconds, as a kubelet does.

Environment (besides harness.py's): KUBECTL (default kubectl), VS_CLI_BIN,
VS_ROUTER_BIN like router_harness.py.
"""
import base64
import copy
import hashlib
import http.client
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

import harness
from harness import HarnessError

KUBECTL = os.environ.get("KUBECTL", "kubectl")
K8S_DIR = os.path.join(harness.REPO, "deploy", "k8s")
VALIDATE_JS = os.path.join(K8S_DIR, "test", "validate.js")
NODE_JS = os.environ.get("NODE", "node")
IMAGE_BINS = {
    "/usr/local/bin/vecshard-node": harness.NODE_BIN,
    "/usr/local/bin/vecshard-router": os.environ.get(
        "VS_ROUTER_BIN", os.path.join(harness.BUILD, "vecshard-router")),
    "/usr/local/bin/vecshard": os.environ.get("VS_CLI_BIN",
                                              os.path.join(harness.BUILD, "vecshard")),
    "/usr/local/bin/etcd": harness.ETCD_BIN,
}
# The image's PATH (Debian's default); a container sees nothing else of ours.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLUSTER_DOMAIN = "cluster.local"
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "127.0.0.1", "localhost", "[::1]"}


# ------------------------------------------------------------------ rendering
def render(overlay):
    """The objects of `kubectl kustomize deploy/k8s/<overlay>` (overlay: a path
    under deploy/k8s, e.g. "overlays/dev", or just "dev" for an overlay)."""
    path = overlay if os.path.isabs(overlay) else os.path.join(K8S_DIR, overlay)
    if not os.path.isdir(path):
        path = os.path.join(K8S_DIR, "overlays", overlay)
    return [o for o in yaml.safe_load_all(render_text(path)) if o is not None]


def render_kustomization(text):
    """The objects of a kustomization.yaml given as text, rendered from a temp
    dir (it names deploy/k8s as "{k8s}", e.g. "resources: [{k8s}/base]"):
    what an operator's own overlay over this repo's base renders to."""
    tmp = tempfile.mkdtemp(prefix="vs-kustomize-")
    try:
        rel = os.path.relpath(K8S_DIR, tmp)
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write(text.replace("{k8s}", rel))
        return [o for o in yaml.safe_load_all(render_text(tmp)) if o is not None]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render_text(path):
    """kubectl kustomize PATH's output; HarnessError with its stderr if it fails."""
    if shutil.which(KUBECTL) is None:
        raise HarnessError("%s not found: the manifests are rendered with `kubectl kustomize`"
                           % KUBECTL)
    p = subprocess.run([KUBECTL, "kustomize", path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise HarnessError("kubectl kustomize %s exited %d: %s" % (path, p.returncode, p.stderr))
    return p.stdout


def validate(objects):
    """Runs deploy/k8s/test/validate.js on objects; returns (exit code, output)."""
    if not os.path.isdir(os.path.join(K8S_DIR, "test", "node_modules")):
        raise HarnessError("deploy/k8s/test/node_modules is missing: run `make deps` "
                           "(npm ci in deploy/k8s/test)")
    p = subprocess.run([NODE_JS, VALIDATE_JS], input=yaml.safe_dump_all(objects),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


# ------------------------------------------------------------------ $(VAR) expansion
def expand(s, lookup):
    """Kubernetes' $(VAR) expansion of s (k8s.io/kubernetes third_party/forked/
    golang/expansion): $(NAME) -> lookup(NAME) when defined, else left as
    written; $$ -> $; any other $ stays."""
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "$" or i + 1 >= len(s):
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = s.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = s[i + 2:close]
                val = lookup(name)
                out.append(val if val is not None else "$(" + name + ")")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ------------------------------------------------------------------ objects
def _labels_match(selector, labels):
    """True if a Service (plain map) or workload (matchLabels/matchExpressions)
    selector selects labels."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for e in selector.get("matchExpressions") or []:
            op, key, vals = e["operator"], e["key"], e.get("values") or []
            if op == "In" and labels.get(key) not in vals:
                return False
            if op == "NotIn" and labels.get(key) in vals:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True
    return all(labels.get(k) == v for k, v in selector.items())


def _env_name(service_name):
    return service_name.upper().replace("-", "_")


class Pod:
    """One pod of a workload: name, namespace, labels, spec, and the loopback
    port and directory it gets here."""

    def __init__(self, workload, name, spec, labels, hostname=None, subdomain=None):
        self.workload = workload
        self.name = name
        self.namespace = workload["metadata"].get("namespace", "default")
        self.spec = spec
        self.labels = labels
        self.hostname = hostname
        self.subdomain = subdomain
        self.ports = {}  # containerPort -> local port
        self.port_names = {}  # port name -> containerPort
        for c in spec.get("containers", []):
            for p in c.get("ports") or []:
                self.ports[int(p["containerPort"])] = None
                if p.get("name"):
                    self.port_names[p["name"]] = int(p["containerPort"])
        self.root = None
        self.procs = {}  # container name -> harness.Proc

    def port(self, ref):
        """The local port of a containerPort given by number or name."""
        cport = self.port_names.get(ref) if isinstance(ref, str) and not ref.isdigit() else int(ref)
        if cport is None or cport not in self.ports:
            raise HarnessError("pod %s declares no containerPort %r" % (self.name, ref))
        return self.ports[cport]

    def volume_dir(self, name):
        d = os.path.join(self.root, "volumes", name)
        os.makedirs(d, exist_ok=True)
        return d


class Manifests:
    """The rendered objects, indexed, and the pods their workloads make."""

    def __init__(self, objects, external=None):
        """external: {"host:port": local port} for addresses outside the
        manifests (an etcd the cluster already runs)."""
        self.objects = [copy.deepcopy(o) for o in objects]
        self.external = dict(external or {})
        self.pods = []
        for o in self.objects:
            if o["kind"] == "StatefulSet":
                self._statefulset_pods(o)
            elif o["kind"] == "Deployment":
                self._deployment_pods(o)

    def all(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def _template(self, w):
        t = w["spec"]["template"]
        return copy.deepcopy(t["spec"]), dict((t.get("metadata") or {}).get("labels") or {})

    def _statefulset_pods(self, w):
        name = w["metadata"]["name"]
        for i in range(int(w["spec"].get("replicas", 1))):
            spec, labels = self._template(w)
            labels["statefulset.kubernetes.io/pod-name"] = "%s-%d" % (name, i)
            labels["apps.kubernetes.io/pod-index"] = str(i)
            self.pods.append(Pod(w, "%s-%d" % (name, i), spec, labels, hostname="%s-%d" % (name, i),
                                 subdomain=w["spec"].get("serviceName")))

    def _deployment_pods(self, w):
        name = w["metadata"]["name"]
        tmpl = yaml.safe_dump(w["spec"]["template"], sort_keys=True).encode()
        h = hashlib.sha256(tmpl).hexdigest()[:10]
        # A Deployment scaled by an HPA has no replicas field: Kubernetes makes 1.
        for i in range(int(w["spec"].get("replicas", 1))):
            spec, labels = self._template(w)
            labels["pod-template-hash"] = h
            self.pods.append(Pod(w, "%s-%s-%05d" % (name, h, i), spec, labels,
                                 hostname=spec.get("hostname"), subdomain=spec.get("subdomain")))

    def pod(self, name):
        for p in self.pods:
            if p.name == name:
                return p
        raise HarnessError("no pod %s" % name)

    def pods_of(self, workload_name):
        return [p for p in self.pods if p.workload["metadata"]["name"] == workload_name]

    def service(self, name, namespace):
        return self._source("Service", name, namespace)

    def selected(self, svc):
        """The pods a Service selects (same namespace), in order."""
        ns = svc["metadata"].get("namespace", "default")
        return [p for p in self.pods if p.namespace == ns and
                _labels_match(svc["spec"].get("selector"), p.labels)]

    def _source(self, kind, name, namespace):
        """The object kind/name of namespace, or None."""
        for o in self.all(kind):
            md = o["metadata"]
            if md["name"] == name and md.get("namespace", "default") == namespace:
                return o
        return None

    # --- the environment a kubelet builds
    def _service_links(self, pod):
        """The docker-link variables of every non-headless Service of the pod's
        namespace (clusterIP made up: nothing listens there)."""
        env = {}
        services = [s for s in self.all("Service")
                    if s["metadata"].get("namespace", "default") == pod.namespace and
                    s["spec"].get("clusterIP") != "None"]
        for n, s in enumerate(sorted(services, key=lambda s: s["metadata"]["name"])):
            ip = "10.96.0.%d" % (10 + n)
            base = _env_name(s["metadata"]["name"])
            ports = s["spec"].get("ports") or []
            if not ports:
                continue
            env[base + "_SERVICE_HOST"] = ip
            env[base + "_SERVICE_PORT"] = str(ports[0]["port"])
            for p in ports:
                proto = p.get("protocol", "TCP")
                if p.get("name"):
                    env["%s_SERVICE_PORT_%s" % (base, _env_name(p["name"]))] = str(p["port"])
                pre = "%s_PORT_%d_%s" % (base, p["port"], proto)
                env[pre] = "%s://%s:%d" % (proto.lower(), ip, p["port"])
                env[pre + "_PROTO"] = proto.lower()
                env[pre + "_PORT"] = str(p["port"])
                env[pre + "_ADDR"] = ip
            env[base + "_PORT"] = "%s://%s:%d" % (ports[0].get("protocol", "TCP").lower(), ip,
                                                  ports[0]["port"])
        return env

    def _field(self, pod, path):
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            src = pod.labels if m.group(1) == "labels" else {}
            return src.get(m.group(2), "")
        values = {"metadata.name": pod.name, "metadata.namespace": pod.namespace,
                  "metadata.uid": hashlib.md5(pod.name.encode()).hexdigest(),
                  "spec.nodeName": "localhost", "spec.serviceAccountName":
                  pod.spec.get("serviceAccountName", "default"),
                  "status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1",
                  "status.podIPs": "127.0.0.1", "status.hostIPs": "127.0.0.1"}
        if path not in values:
            raise HarnessError("pod %s: fieldRef %s is not modelled" % (pod.name, path))
        return values[path]

    @staticmethod
    def _quantity(q):
        """A resource quantity as a float in base units (cpu: cores, memory: bytes)."""
        q = str(q)
        suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1 << 10,
                    "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
        for s in sorted(suffixes, key=len, reverse=True):
            if q.endswith(s):
                return float(q[:-len(s)]) * suffixes[s]
        return float(q)

    def _resource(self, pod, container, ref):
        want = ref.get("containerName") or container["name"]
        c = next(x for x in pod.spec["containers"] if x["name"] == want)
        kind, _, res = ref["resource"].partition(".")
        val = (c.get("resources") or {}).get(kind, {}).get(res)
        if val is None:
            raise HarnessError("pod %s: resourceFieldRef %s unset (the node's allocatable "
                               "is not modelled)" % (pod.name, ref["resource"]))
        div = self._quantity(ref.get("divisor", "1"))
        return str(int(math.ceil(self._quantity(val) / div)))

    def _key_ref(self, pod, kind, ref):
        src = self._source(kind, ref["name"], pod.namespace)
        data = (src or {}).get("data") or {}
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update((src or {}).get("stringData") or {})
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise HarnessError("pod %s: %s %s has no key %s" % (pod.name, kind, ref["name"],
                                                               ref["key"]))
        return data[ref["key"]]

    def container_env(self, pod, container):
        """(env, declared): the container's environment as a kubelet builds it,
        and the names that come from the manifest (envFrom and env, not
        service links)."""
        env = {}
        if pod.spec.get("enableServiceLinks", True):
            env.update(self._service_links(pod))
        declared = set()
        for ef in container.get("envFrom") or []:
            kind, ref = ("ConfigMap", ef["configMapRef"]) if "configMapRef" in ef else \
                ("Secret", ef["secretRef"])
            src = self._source(kind, ref["name"], pod.namespace)
            if src is None:
                if ref.get("optional"):
                    continue
                raise HarnessError("pod %s: envFrom %s %s does not exist" % (pod.name, kind,
                                                                            ref["name"]))
            data = dict(src.get("data") or {})
            if kind == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            for k, v in data.items():
                env[ef.get("prefix", "") + k] = v
                declared.add(ef.get("prefix", "") + k)
        for e in container.get("env") or []:
            name = e["name"]
            if "valueFrom" in e:
                vf = e["valueFrom"]
                if "fieldRef" in vf:
                    val = self._field(pod, vf["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in vf:
                    val = self._resource(pod, container, vf["resourceFieldRef"])
                elif "configMapKeyRef" in vf:
                    val = self._key_ref(pod, "ConfigMap", vf["configMapKeyRef"])
                elif "secretKeyRef" in vf:
                    val = self._key_ref(pod, "Secret", vf["secretKeyRef"])
                else:
                    raise HarnessError("pod %s: env %s: valueFrom %s not modelled" %
                                       (pod.name, name, list(vf)))
                if val is None:
                    continue
            else:
                val = expand(e.get("value", ""), env.get)
            env[name] = val
            declared.add(name)
        return env, declared

    def container_argv(self, container, env):
        """command + args with $(VAR) expanded over env (the image's own
        entrypoint is not known here: a container must name its command)."""
        if not container.get("command"):
            raise HarnessError("container %s has no command (the image has no entrypoint)" %
                               container["name"])
        words = list(container["command"]) + list(container.get("args") or [])
        return [expand(a, env.get) for a in words]

    # --- addresses and paths
    # host:port, host a DNS name, IPv4 or [IPv6], not inside a longer word.
    _HOSTPORT = re.compile(r"(?<![\w.\-\[])"
                           r"(\[[0-9a-fA-F:]*\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)"
                           r":(\d{1,5})(?!\d)")

    def _dns_suffix_ok(self, rest, namespace):
        return rest in ([], [namespace], [namespace, "svc"],
                        [namespace, "svc"] + CLUSTER_DOMAIN.split("."))

    def _service_port(self, svc, port):
        """(pod, containerPort) behind Service port `port` of svc."""
        for sp in svc["spec"].get("ports") or []:
            if int(sp["port"]) == port:
                pods = self.selected(svc)
                if not pods:
                    raise HarnessError("Service %s selects no pod" % svc["metadata"]["name"])
                target = sp.get("targetPort", sp["port"])
                pod = pods[0]
                cport = pod.port_names.get(target) if isinstance(target, str) else int(target)
                if cport is None:
                    raise HarnessError("Service %s port %d: targetPort %r is not a port of pod %s"
                                       % (svc["metadata"]["name"], port, target, pod.name))
                return pod, cport
        raise HarnessError("Service %s has no port %d" % (svc["metadata"]["name"], port))

    def resolve(self, pod, host, port):
        """The local port that host:port, seen from pod, reaches."""
        if "%s:%s" % (host, port) in self.external:
            return self.external["%s:%s" % (host, port)]
        port = int(port)
        labels = host.split(".")
        if host in WILDCARD_HOSTS:
            target, cport = pod, port
        else:
            target = cport = None
            if len(labels) >= 2:
                svc = self.service(labels[1], pod.namespace)
                if svc is not None and svc["spec"].get("clusterIP") == "None" and \
                        self._dns_suffix_ok(labels[2:], pod.namespace):
                    for p in self.selected(svc):
                        if p.hostname == labels[0] and p.subdomain == labels[1]:
                            target, cport = p, port
            if target is None:
                svc = self.service(labels[0], pod.namespace)
                if svc is not None and self._dns_suffix_ok(labels[1:], pod.namespace):
                    target, cport = self._service_port(svc, port)
            if target is None:
                raise HarnessError("pod %s: host %r resolves to no pod or Service of namespace %s"
                                   % (pod.name, host, pod.namespace))
        if cport not in target.ports:
            raise HarnessError("pod %s: %s:%d reaches pod %s, which declares no containerPort %d"
                               % (pod.name, host, port, target.name, cport))
        return target.ports[cport]

    def map_value(self, pod, container, s):
        """s with every host:port and every volume mountPath mapped to this machine."""
        s = self._HOSTPORT.sub(
            lambda m: "127.0.0.1:%d" % self.resolve(pod, m.group(1), m.group(2)), s)
        mounts = sorted(container.get("volumeMounts") or [], key=lambda v: -len(v["mountPath"]))
        for vm in mounts:
            local = pod.volume_dir(vm["name"])
            if vm.get("subPath"):
                local = os.path.join(local, vm["subPath"])
                os.makedirs(local, exist_ok=True)
            mp = vm["mountPath"].rstrip("/")
            s = re.sub(r"(?<![\w.\-/])" + re.escape(mp) + r"(?=/|$|[,:;\s])", lambda _m: local, s)
        return s


# ------------------------------------------------------------------ running
def _http_get(port, path, timeout=2.0):
    """Status of GET http://127.0.0.1:port/path, or None if it could not be asked."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except (OSError, http.client.HTTPException):
        return None


class LocalCluster:
    """Every pod of a Manifests started as local processes in one temp dir."""

    def __init__(self, manifests):
        self.m = manifests
        self.pods = list(manifests.pods)
        self.root = None
        self.saved_tails = ""

    # --- lifecycle
    def start(self, timeout=60, print_tails=True, attempts=3):
        """Starts every container of every pod at once (as a cluster does),
        then waits until each readiness probe passes. A start in which a
        process lost the race for its free port is tried again on fresh
        ports (up to attempts). On failure everything is stopped (log tails
        printed unless print_tails=False) and HarnessError raised."""
        harness._install_handlers()
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return self
            except BaseException as e:
                lost_race = isinstance(e, HarnessError) and any(
                    "address already in use" in p.tail(20).lower()
                    for pod in self.pods for p in pod.procs.values())
                if print_tails and not (lost_race and attempt + 1 < attempts):
                    self.print_tails()
                self.close(check=False)
                if not (lost_race and attempt + 1 < attempts):
                    raise
        raise HarnessError("unreachable")

    def _start_once(self, timeout):
        """One start on fresh ports in a fresh temp dir."""
        self.root = tempfile.mkdtemp(prefix="vs-k8s-")
        with harness._lock:
            harness._dirs.add(self.root)
        ports = harness.free_ports(sum(len(p.ports) for p in self.pods))
        for pod in self.pods:
            pod.procs = {}
            pod.root = os.path.join(self.root, pod.name)
            os.makedirs(os.path.join(pod.root, "workdir"), exist_ok=True)
            for cport in sorted(pod.ports):
                pod.ports[cport] = ports.pop()
        for pod in self.pods:
            for c in pod.spec["containers"]:
                self._spawn(pod, c)
        self.wait_ready(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.print_tails()
        self.close(check=exc_type is None)
        return False

    def process(self, pod, container):
        """(argv, env) of a container as started here (mapped to this machine)."""
        env, _declared = self.m.container_env(pod, container)
        argv = self.m.container_argv(container, env)
        argv = [self.m.map_value(pod, container, a) for a in argv]
        env = {k: self.m.map_value(pod, container, v) for k, v in env.items()}
        if argv[0] not in IMAGE_BINS:
            raise HarnessError("container %s of pod %s runs %s, which is not a binary of the "
                               "image (IMAGE_BINS)" % (container["name"], pod.name, argv[0]))
        argv[0] = IMAGE_BINS[argv[0]]
        if not os.path.isfile(argv[0]):
            raise HarnessError("%s is missing (make)" % argv[0])
        full = {"PATH": IMAGE_PATH, "HOSTNAME": pod.hostname or pod.name}
        full.update(env)
        return argv, full

    def run_hook(self, pod, container, which="preStop", timeout=300):
        """Runs the container's lifecycle exec hook (preStop, postStart) to
        completion as a kubelet would, in the container's environment, with
        the image's binaries and every host:port mapped as for the container
        itself; returns the CompletedProcess (text output)."""
        hook = ((container.get("lifecycle") or {}).get(which) or {}).get("exec")
        if not hook:
            raise HarnessError("container %s has no %s exec hook" % (container["name"], which))
        _argv, env = self.process(pod, container)
        argv = []
        for a in hook["command"]:  # no $(VAR) expansion in hooks: a shell does it
            a = self.m.map_value(pod, container, a)
            for image_path, local in IMAGE_BINS.items():
                a = re.sub(r"(?<![\w/])" + re.escape(image_path) + r"(?![\w/-])", local, a)
            argv.append(a)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=os.path.join(pod.root, "workdir"))

    def _spawn(self, pod, c):
        argv, env = self.process(pod, c)
        name = "%s.%s" % (pod.name, c["name"])
        proc = harness.Proc(name, os.path.join(self.root, name + ".log"))
        proc.spawn(argv, env=env, inherit_env=False, cwd=os.path.join(pod.root, "workdir"))
        proc.argv0 = argv[0]
        pod.procs[c["name"]] = proc

    def probe(self, pod, container, which):
        """True if the container's probe (readinessProbe, livenessProbe) passes
        now; a container without one passes while it runs."""
        proc = pod.procs[container["name"]]
        if not proc.alive():
            return False
        pr = container.get(which)
        if not pr:
            return True
        if "httpGet" in pr:
            g = pr["httpGet"]
            if g.get("scheme", "HTTP") != "HTTP":
                raise HarnessError("%s: only HTTP probes are modelled" % pod.name)
            st = _http_get(pod.port(g["port"]), g.get("path", "/"),
                           timeout=float(pr.get("timeoutSeconds", 1)))
            return st is not None and 200 <= st < 400
        if "tcpSocket" in pr:
            try:
                socket.create_connection(("127.0.0.1", pod.port(pr["tcpSocket"]["port"])),
                                         timeout=float(pr.get("timeoutSeconds", 1))).close()
                return True
            except OSError:
                return False
        raise HarnessError("%s: %s %s is not modelled" % (pod.name, which, list(pr)))

    def wait_ready(self, timeout):
        """Waits until every container of every pod passes its readiness probe."""
        deadline = time.monotonic() + timeout
        waiting = []
        while time.monotonic() < deadline:
            waiting = []
            for pod in self.pods:
                for c in pod.spec["containers"]:
                    proc = pod.procs[c["name"]]
                    if not proc.alive():
                        raise HarnessError("%s exited with status %s; log tail:\n%s" % (
                            proc.name, proc.popen.returncode, proc.tail()))
                    if not self.probe(pod, c, "readinessProbe"):
                        waiting.append(proc.name)
            if not waiting:
                return
            time.sleep(0.1)
        raise HarnessError("not ready within %.0f s: %s" % (timeout, ", ".join(waiting)))

    def close(self, check=True):
        """SIGTERM to every process (vecshard before etcd, as the order of the
        pods' dependencies), SIGKILL after terminationGracePeriodSeconds;
        removes the temp dir. With check, a vecshard process that did not
        exit 0 on SIGTERM raises HarnessError once everything is stopped
        (etcd re-raises the signal after its clean stop: its status is not
        checked, as harness.Etcd does not)."""
        if self.root is None:
            return
        bad = []
        order = sorted(self.pods, key=lambda p: p.workload["metadata"]["name"] == "etcd")
        for pod in order:
            grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
            for proc in pod.procs.values():
                try:
                    was_running = proc.alive()
                    rc = proc.stop(grace=grace)
                    ours = os.path.basename(proc.argv0).startswith("vecshard")
                    if was_running and rc != 0 and ours:
                        bad.append("%s exited with status %s on SIGTERM" % (proc.name, rc))
                except Exception:  # keep going: the rest must be stopped too
                    proc.kill9()
        self.saved_tails = self.tails()
        with harness._lock:
            harness._dirs.discard(self.root)
        if os.environ.get("VS_KEEP_TMP") == "1":
            sys.stderr.write("manifest_harness: kept %s\n" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        if bad and check:
            raise HarnessError("; ".join(bad) + "; log tails:\n" + self.saved_tails)

    # --- addresses for the test
    def service_addr(self, service, port_name):
        """127.0.0.1:<port> a client in the namespace reaches for Service
        `service`, port `port_name`."""
        ns = self.pods[0].namespace
        svc = self.m.service(service, ns)
        if svc is None:
            raise HarnessError("no Service %s" % service)
        for sp in svc["spec"]["ports"]:
            if sp.get("name") == port_name:
                pod, cport = self.m._service_port(svc, int(sp["port"]))
                return "127.0.0.1:%d" % pod.ports[cport]
        raise HarnessError("Service %s has no port named %s" % (service, port_name))

    def tails(self, n=harness.TAIL_LINES):
        if self.root is None:
            return self.saved_tails
        parts = []
        for pod in self.pods:
            for p in pod.procs.values():
                parts.append("---- %s (%s, pid %s)\n%s" % (p.name, p.log_path, p.pid, p.tail(n)))
        return "\n".join(parts)

    def print_tails(self):
        sys.stderr.write("\n==== manifest_harness: process log tails\n%s\n==== end of tails\n" %
                         self.tails())
        sys.stderr.flush()


def flag_envs(binary):
    """The environment names binary reads for its flags: VECSHARD_* from a
    vecshard binary's --help ("env VECSHARD_X"), ETCD_* from etcd's flags."""
    p = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    text = p.stdout + p.stderr
    if os.path.basename(binary) == "etcd":
        return {"ETCD_" + f.upper().replace("-", "_") for f in re.findall(r"--([a-z0-9-]+)", text)}
    names = set(re.findall(r"env (VECSHARD_[A-Z0-9_]+)", text))
    if not names:
        raise HarnessError("%s --help lists no environment variable:\n%s" % (binary, text[:2000]))
    return names
