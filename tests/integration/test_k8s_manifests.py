"""test_k8s_manifests.py — deploy/k8s renders, validates, and runs.

1. `kubectl kustomize` renders the dev and production overlays (and the base).
2. Every rendered object passes the Kubernetes API schemas
   (deploy/k8s/test/validate.js, kubernetes-models; ServiceMonitor with
   @kubernetes-models/prometheus-operator), and broken objects fail them.
3. What vecshard relies on in the objects (the schemas cannot say it):
   probes on the http port's /readyz and /healthz, the headless node Service
   with publishNotReadyAddresses, node ids from the pod name, PDBs, the etcd
   member list matching the etcd pods, the grace period covering the shutdown
   snapshots, every VECSHARD_* / ETCD_* variable a real flag of its binary,
   production's anti-affinity, HPA and ServiceMonitor.
4. The launch-from-manifest test: each overlay's etcd, node and router
   containers run as local processes with the command, args and env the
   manifests give them (manifest_harness.py), pass their readiness probes,
   and a create / upsert / search through the router Service works with
   R = 2 (dev: 1 etcd, 2 nodes; production: a 3-member etcd cluster, 3
   nodes); the nodes registered under their pod names at their pod DNS
   names. A manifest with a flag typo, an unknown host or an
   undeclared port fails to start.
"""
import copy
import re
import shutil
import tempfile
import unittest

import grpc
import numpy as np

import harness
import manifest_harness as mh
import router_harness as rh
from vecshard.v1 import vecshard_pb2

VECSHARD_BINS = ("/usr/local/bin/vecshard-node", "/usr/local/bin/vecshard-router")
OVERLAYS = ("dev", "production")


def containers(objs, workload):
    for o in objs:
        if o["kind"] in ("StatefulSet", "Deployment") and o["metadata"]["name"] == workload:
            return o["spec"]["template"]["spec"]["containers"]
    raise AssertionError("no workload %s" % workload)


def find(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError("no %s %s" % (kind, name))


class Render(unittest.TestCase):
    """The overlays render and pass the API schemas."""

    @classmethod
    def setUpClass(cls):
        cls.objs = {o: mh.render(o) for o in OVERLAYS}

    def test_overlays_render(self):
        for o in OVERLAYS:
            kinds = sorted({x["kind"] for x in self.objs[o]})
            for k in ("ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "StatefulSet"):
                self.assertIn(k, kinds, o)
        self.assertIn("ServiceMonitor", {x["kind"] for x in self.objs["production"]})
        self.assertIn("HorizontalPodAutoscaler", {x["kind"] for x in self.objs["production"]})

    def test_schemas(self):
        self.objs["base"] = mh.render("base")  # renders on its own too
        for o in OVERLAYS + ("base",):
            rc, out = mh.validate(self.objs[o])
            self.assertEqual(rc, 0, "%s:\n%s" % (o, out))
            n = len(self.objs[o])
            self.assertIn("%d valid, 0 invalid" % n, out)

    def test_schemas_reject_broken_objects(self):
        objs = self.objs["production"]
        cases = []
        sts = copy.deepcopy(find(objs, "StatefulSet", "vecshard-node"))
        sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "7400"
        cases.append((sts, "containerPort must be integer"))
        svc = copy.deepcopy(find(objs, "Service", "vecshard-node"))
        svc["spec"]["publishNotReadyAddresses"] = "yes"
        cases.append((svc, "publishNotReadyAddresses must be boolean"))
        pdb = copy.deepcopy(find(objs, "PodDisruptionBudget", "vecshard-node"))
        del pdb["spec"]["selector"]["matchLabels"]
        pdb["spec"]["selector"]["matchExpressions"] = [{"key": "a"}]
        cases.append((pdb, "must have required property operator"))
        sm = copy.deepcopy(find(objs, "ServiceMonitor", "vecshard"))
        sm["spec"]["endpoints"][0]["port"] = 9400
        cases.append((sm, "/spec/endpoints/0/port must be string"))
        unknown = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
        cases.append((unknown, "no schema for example.com/v1 Thing"))
        for obj, want in cases:
            rc, out = mh.validate([obj])
            self.assertEqual(rc, 1, out)
            self.assertIn(want, out)
            self.assertIn("0 valid, 1 invalid", out)


EXTERNAL_ETCD = """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{k8s}/overlays/dev]
components: [{k8s}/components/external-etcd]
configMapGenerator:
  - name: vecshard-common
    behavior: merge
    literals: [VECSHARD_ETCD=http://etcd-a.example:2379]
"""


class ExternalEtcd(harness.ClusterTestCase):
    """components/external-etcd: no etcd objects left, nodes and routers on the
    etcd the overlay names (here a harness etcd on loopback)."""

    def test_external_etcd(self):
        objs = mh.render_kustomization(EXTERNAL_ETCD)
        self.assertFalse([o for o in objs if o["metadata"]["name"].startswith("etcd")])
        rc, out = mh.validate(objs)
        self.assertEqual(rc, 0, out)
        root = tempfile.mkdtemp(prefix="vs-it-")
        with harness._lock:
            harness._dirs.add(root)  # removed at exit even if this test is killed
        etcd = harness.Etcd(root)
        try:
            etcd.start()
            m = mh.Manifests(objs, external={"etcd-a.example:2379": etcd.client_port})
            self.assertEqual(env_of(m, "vecshard-router", "VECSHARD_ETCD"),
                             "http://etcd-a.example:2379")
            self.cluster = mh.LocalCluster(m)
            with self.cluster:
                keys = [kv["key"] for kv in etcd.range_prefix("/vecshard/nodes/")]
                self.assertEqual(sorted(keys), ["/vecshard/nodes/vecshard-node-0",
                                                "/vecshard/nodes/vecshard-node-1"])
        finally:
            etcd.stop()
            shutil.rmtree(root, ignore_errors=True)


class Contents(unittest.TestCase):
    """The fields vecshard depends on, in both overlays."""

    @classmethod
    def setUpClass(cls):
        cls.objs = {o: mh.render(o) for o in OVERLAYS}
        cls.envs = {b: mh.flag_envs(mh.IMAGE_BINS[b])
                    for b in VECSHARD_BINS + ("/usr/local/bin/etcd",)}

    def test_vecshard_containers(self):
        for o in OVERLAYS:
            for w, grpc_port in (("vecshard-node", 7400), ("vecshard-router", 7300)):
                (c,) = containers(self.objs[o], w)
                self.assertEqual(c["image"], "vecshard:latest")
                self.assertEqual(c["command"], ["/usr/local/bin/" + w])
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                self.assertEqual(ports, {"grpc": grpc_port, "http": 9400}, (o, w))
                self.assertIn("--http=0.0.0.0:9400", c["args"])
                self.assertIn("--listen=0.0.0.0:%d" % grpc_port, c["args"])
                self.assertEqual(c["readinessProbe"]["httpGet"],
                                 {"path": "/readyz", "port": "http"})
                self.assertEqual(c["livenessProbe"]["httpGet"],
                                 {"path": "/healthz", "port": "http"})

    def test_node_identity_and_service(self):
        for o in OVERLAYS:
            objs = self.objs[o]
            sts = find(objs, "StatefulSet", "vecshard-node")
            svc = find(objs, "Service", "vecshard-node")
            self.assertEqual(sts["spec"]["serviceName"], "vecshard-node")
            self.assertEqual(svc["spec"]["clusterIP"], "None")
            self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
            self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel")
            (c,) = sts["spec"]["template"]["spec"]["containers"]
            self.assertIn("--node-id=$(POD_NAME)", c["args"])
            self.assertIn("--advertise=$(POD_NAME).vecshard-node.$(POD_NAMESPACE).svc:7400",
                          c["args"])
            env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                   for e in c["env"]}
            self.assertEqual(env, {"POD_NAME": "metadata.name",
                                   "POD_NAMESPACE": "metadata.namespace"})
            (vct,) = sts["spec"]["volumeClaimTemplates"]
            self.assertEqual(c["volumeMounts"], [{"name": vct["metadata"]["name"],
                                                  "mountPath": "/var/lib/vecshard"}])
            self.assertIn("--data-dir=/var/lib/vecshard", c["args"])
            pdb = find(objs, "PodDisruptionBudget", "vecshard-node")
            self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
            self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                             sts["spec"]["selector"]["matchLabels"])

    def test_grace_covers_shutdown_snapshots(self):
        for o in OVERLAYS:
            m = mh.Manifests(self.objs[o])
            pod = m.pods_of("vecshard-node")[0]
            env, _ = m.container_env(pod, pod.spec["containers"][0])
            need_ms = int(env["VECSHARD_SHUTDOWN_GRACE_MS"]) + \
                int(env["VECSHARD_SHUTDOWN_SNAPSHOT_TIMEOUT_MS"])
            grace_s = pod.spec["terminationGracePeriodSeconds"]
            # The preStop's wait counts against the grace period too.
            hook = pod.spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            wait_s = int(re.search(r"--timeout-s (\d+)", " ".join(hook)).group(1))
            # The last snapshot started before the timeout must still finish.
            self.assertGreaterEqual(grace_s * 1000, wait_s * 1000 + need_ms + 30000, o)

    def test_every_variable_is_a_flag(self):
        """A misspelt VECSHARD_FSINC would be ignored by the binary: refuse it here."""
        for o in OVERLAYS:
            m = mh.Manifests(self.objs[o])
            for pod in m.pods:
                for c in pod.spec["containers"]:
                    known = self.envs[c["command"][0]]
                    prefix = "ETCD_" if c["command"][0].endswith("/etcd") else "VECSHARD_"
                    env, declared = m.container_env(pod, c)
                    for name in sorted(env):
                        if name.startswith(prefix):
                            self.assertIn(name, known, "%s: %s of %s is no flag of %s" % (
                                o, name, pod.name, c["command"][0]))
                    self.assertTrue(declared >= {n for n in env if n.startswith(prefix)})

    def test_etcd_members(self):
        for o in OVERLAYS:
            m = mh.Manifests(self.objs[o])
            pods = m.pods_of("etcd")
            env, _ = m.container_env(pods[0], pods[0].spec["containers"][0])
            members = dict(x.split("=", 1) for x in env["ETCD_INITIAL_CLUSTER"].split(","))
            self.assertEqual(sorted(members), [p.name for p in pods], o)
            for name, url in members.items():
                self.assertEqual(url, "http://%s.etcd:2380" % name)
            etcd_urls = env_of(m, "vecshard-node", "VECSHARD_ETCD").split(",")
            self.assertEqual(etcd_urls, ["http://%s.etcd:2379" % p.name for p in pods], o)
        self.assertEqual(len(mh.Manifests(self.objs["dev"]).pods_of("etcd")), 1)
        self.assertEqual(len(mh.Manifests(self.objs["production"]).pods_of("etcd")), 3)

    def test_sizes(self):
        dev = mh.Manifests(self.objs["dev"])
        prod = mh.Manifests(self.objs["production"])
        self.assertEqual(len(dev.pods_of("vecshard-node")), 2)
        self.assertEqual(len(dev.pods_of("vecshard-router")), 1)
        self.assertGreaterEqual(len(prod.pods_of("vecshard-node")), 3)

    def test_production(self):
        objs = self.objs["production"]
        for w in ("etcd", "vecshard-node"):
            sts = find(objs, "StatefulSet", w)
            (term,) = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]
            self.assertEqual(term["topologyKey"], "kubernetes.io/hostname")
            self.assertEqual(term["labelSelector"]["matchLabels"],
                             sts["spec"]["selector"]["matchLabels"])
            (c,) = sts["spec"]["template"]["spec"]["containers"]
            self.assertEqual(c["resources"]["requests"]["memory"],
                             c["resources"]["limits"]["memory"])
        dep = find(objs, "Deployment", "vecshard-router")
        self.assertNotIn("replicas", dep["spec"])  # the HPA owns it
        hpa = find(objs, "HorizontalPodAutoscaler", "vecshard-router")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vecshard-router"})
        # The ServiceMonitor selects the node and router Services, and names a
        # port each of them has.
        m = mh.Manifests(objs)
        sm = find(objs, "ServiceMonitor", "vecshard")
        selected = [s for s in m.all("Service")
                    if mh._labels_match(sm["spec"]["selector"], s["metadata"]["labels"])]
        self.assertEqual(sorted(s["metadata"]["name"] for s in selected),
                         ["vecshard-node", "vecshard-router"])
        for s in selected:
            self.assertIn(sm["spec"]["endpoints"][0]["port"],
                          [p["name"] for p in s["spec"]["ports"]])
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")


def env_of(m, workload, name):
    pod = m.pods_of(workload)[0]
    env, _ = m.container_env(pod, pod.spec["containers"][0])
    return env[name]


class Expansion(unittest.TestCase):
    """manifest_harness.expand follows Kubernetes' rules."""

    def test_expand(self):
        env = {"A": "x", "B": "$(A)"}.get
        self.assertEqual(mh.expand("$(A)-$(A)", env), "x-x")
        self.assertEqual(mh.expand("$(C)", env), "$(C)")
        self.assertEqual(mh.expand("$$(A)", env), "$(A)")
        self.assertEqual(mh.expand("$(B)", env), "$(A)")  # not recursive
        self.assertEqual(mh.expand("a$b$", env), "a$b$")
        self.assertEqual(mh.expand("$(A", env), "$(A")


class Launch(harness.ClusterTestCase):
    """An overlay's containers as local processes; a search through them."""

    def test_dev_overlay_serves(self):
        self.check_serves("dev", ["etcd-0", "vecshard-node-0", "vecshard-node-1"])

    def test_production_overlay_serves(self):
        """3 etcd members forming a cluster from ETCD_INITIAL_CLUSTER, 3 nodes."""
        self.check_serves("production", ["etcd-0", "etcd-1", "etcd-2", "vecshard-node-0",
                                         "vecshard-node-1", "vecshard-node-2"])

    def check_serves(self, overlay, stateful_pods):
        m = mh.Manifests(mh.render(overlay))
        self.assertEqual(sorted(p.name for p in m.pods if p.workload["kind"] == "StatefulSet"),
                         stateful_pods)
        node_ids = [p for p in stateful_pods if p.startswith("vecshard-node-")]
        self.cluster = mh.LocalCluster(m)
        with self.cluster as lc:
            for pod in lc.pods:  # liveness too, once ready
                for c in pod.spec["containers"]:
                    self.assertTrue(lc.probe(pod, c, "livenessProbe"), pod.name)
            ch = harness.channel(lc.service_addr("vecshard-router", "grpc"))
            stub = rh.vecshard_pb2_grpc.VecShardStub(ch)

            # Nodes registered under their pod names, at their pod DNS names
            # (ready nodes are registered; the router's view follows its watch).
            def live_nodes():
                st = stub.ClusterStatus(vecshard_pb2.ClusterStatusRequest(), timeout=10)
                return {n.id: n for n in st.nodes if n.alive}
            nodes = rh.wait_until(lambda: len(live_nodes()) >= len(node_ids) and live_nodes(),
                                  20, "%d live nodes in ClusterStatus" % len(node_ids))
            self.assertEqual(sorted(nodes), node_ids)
            for name, n in nodes.items():
                self.assertEqual(n.addr, "127.0.0.1:%d" % m.pod(name).ports[7400])

            # R = 2: every write goes node to node over the advertised addresses.
            shards = len(node_ids)
            stub.CreateCollection(rh.create_request("k8s", dim=16, shards=shards,
                                                    replication_factor=2), timeout=30)
            rng = np.random.default_rng(10)
            vecs = rng.standard_normal((400, 16)).astype(np.float32)
            ids = np.arange(1, 401)
            rh.wait_until(lambda: rh.code_of(stub.Upsert, rh.upsert_request(
                "k8s", ids[:1], vecs[:1]), timeout=10)[0] == grpc.StatusCode.OK, 30,
                "the first upsert")
            self.assertEqual(rh.upsert_all(stub, "k8s", ids, vecs, batch=100), 400)
            r = stub.Search(rh.search_request("k8s", vecs[[7, 123, 399]], k=5, min_coverage=1.0),
                            timeout=10)
            self.assertEqual([res.hits[0].id for res in r.results], [8, 124, 400])
            for res in r.results:
                self.assertEqual(len(res.hits), 5)
                self.assertAlmostEqual(res.hits[0].distance, 0.0, places=4)
            desc = stub.DescribeCollection(vecshard_pb2.DescribeCollectionRequest(name="k8s"),
                                           timeout=10)
            self.assertEqual(len(desc.shards), shards)
            for sh in desc.shards:
                self.assertEqual(len(sh.in_sync), 2)
                self.assertLessEqual(set(sh.in_sync), set(node_ids))

            # The nodes' preStop: every shard has another in-sync copy, so it
            # returns at once with 0 (the command works as the manifest says).
            for name in node_ids:
                pod = m.pod(name)
                r = lc.run_hook(pod, pod.spec["containers"][0], "preStop", timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("node %s can be stopped" % name, r.stdout)

            # What the ServiceMonitor scrapes answers on every vecshard pod.
            for pod in lc.pods:
                if pod.workload["metadata"]["name"] != "etcd":
                    self.assertEqual(mh._http_get(pod.port("http"), "/metrics"), 200, pod.name)
            ch.close()

    def _start_fails(self, objs, want):
        lc = mh.LocalCluster(mh.Manifests(objs))
        with self.assertRaises(harness.HarnessError) as ctx:
            lc.start(timeout=10, print_tails=False)
        self.assertRegex(str(ctx.exception), want)
        self.assertIsNone(lc.root)  # stopped and cleaned up
        for pod in lc.pods:
            for p in pod.procs.values():
                self.assertFalse(p.alive())

    def test_broken_manifests_fail(self):
        base = mh.render("dev")

        def edit(workload, fn):
            objs = copy.deepcopy(base)
            fn(containers(objs, workload)[0])
            return objs

        # A flag typo: the node exits 2 at start.
        self._start_fails(edit("vecshard-node", lambda c: c["args"].__setitem__(
            0, "--node-idd=$(POD_NAME)")), r"vecshard-node-\d\.node exited with status 2")
        # A host that names no pod: unresolvable, as in a cluster.
        self._start_fails(edit("vecshard-node", lambda c: c["args"].__setitem__(
            1, "--advertise=$(POD_NAME).vecshard-nodes.$(POD_NAMESPACE).svc:7400")),
            r"host 'vecshard-node-\d\.vecshard-nodes\.vecshard-dev\.svc' resolves to no pod")
        # A port the pod does not declare.
        self._start_fails(edit("vecshard-router", lambda c: c["args"].__setitem__(
            2, "--http=0.0.0.0:9401")), r"declares no containerPort 9401")
        # The readiness probe on a path that is not served.
        self._start_fails(edit("vecshard-router", lambda c: c["readinessProbe"]["httpGet"]
                               .__setitem__("path", "/ready")), r"not ready within")


if __name__ == "__main__":
    unittest.main()
