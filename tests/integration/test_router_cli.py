"""deploy/local/cluster.sh and the `vecshard` CLI together, as a user runs them.

cluster.sh starts etcd + 3 nodes + a router in a temp dir and prints the
router's address; `status` shows all five alive; a second `start` on the
same dir refuses and leaves the running cluster alone. Against it the CLI
creates a collection, loads an .fvecs file, searches it with --gt --json
(recall, QPS and latency in the JSON last line), shows status / list /
describe and drops it, with exit status 0 for success, 1 for a failed call
and 2 for bad usage. `cluster.sh stop` then leaves none of the recorded
processes running, and `status` reports them dead (exit 1)."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness
import router_harness as rh
import vsdata

DIM, N, NQ = 64, 4000, 200


def recorded(dir_):
    """[(name, pid, starttime, addr)] from DIR/procs."""
    out = []
    with open(os.path.join(dir_, "procs")) as f:
        for line in f:
            name, pid, st, addr = line.split()
            out.append((name, int(pid), st, addr))
    return out


def starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


class ClusterScriptAndCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="vs-it-local-")
        cls.cdir = os.path.join(cls.dir, "cluster")
        p = rh.run([rh.CLUSTER_SH, "start", "--nodes", "3", "--dir", cls.cdir,
                    "--lease-ttl", "5", "--build", harness.BUILD], timeout=120)
        cls.start_out = p
        if p.returncode != 0:
            cls.kill_leftovers()
            raise AssertionError("cluster.sh start exited %d:\n%s\n%s" %
                                 (p.returncode, p.stdout, p.stderr))
        cls.addr = p.stdout.strip().splitlines()[-1]
        cls.env = {"VECSHARD_ROUTER": cls.addr}
        cls.base, cls.queries = vsdata.clustered(N, DIM, clusters=16, seed=11, spread=0.2,
                                                   n_queries=NQ)
        cls.gt = vsdata.knn(cls.base, cls.queries, 10)
        cls.files = {n: os.path.join(cls.dir, n) for n in ("base.fvecs", "query.fvecs",
                                                            "gt.ivecs")}
        vsdata.write_fvecs(cls.files["base.fvecs"], cls.base)
        vsdata.write_fvecs(cls.files["query.fvecs"], cls.queries)
        vsdata.write_ivecs(cls.files["gt.ivecs"], cls.gt)

    @classmethod
    def kill_leftovers(cls):
        """Last resort: SIGKILL every recorded process still running as started."""
        try:
            procs = recorded(cls.cdir)
        except OSError:
            return
        for name, pid, st, _ in procs:
            if starttime(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @classmethod
    def tearDownClass(cls):
        rh.run([rh.CLUSTER_SH, "stop", "--dir", cls.cdir], timeout=120)
        cls.kill_leftovers()
        if os.environ.get("VS_KEEP_TMP") != "1":
            shutil.rmtree(cls.dir, ignore_errors=True)

    def cli(self, *args, expect=0, timeout=300):
        p = rh.run([rh.CLI_BIN] + list(args), env=self.env, timeout=timeout)
        self.assertEqual(p.returncode, expect, "vecshard %s exited %d\nstdout:\n%s\nstderr:\n%s"
                         % (" ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def last_json(self, p):
        lines = [line for line in p.stdout.splitlines() if line.strip()]
        self.assertTrue(lines, "no stdout")
        return json.loads(lines[-1])

    def test_0_versions(self):
        """vecshard, vecshard-node and vecshard-router --version print the one
        version of common/util/version.h and exit 0 (the image check runs them)."""
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "common", "util", "version.h")) as f:
            version = re.search(r'#define VECSHARD_VERSION "([^"]+)"', f.read()).group(1)
        for name in ("vecshard", "vecshard-node", "vecshard-router"):
            p = rh.run([os.path.join(harness.BUILD, name), "--version"], timeout=30)
            self.assertEqual((p.returncode, p.stdout), (0, "%s %s\n" % (name, version)),
                             "%s --version: %s" % (name, p.stderr))

    def test_1_cluster_script(self):
        self.assertRegex(self.addr, r"^127\.0\.0\.1:\d+$")
        with open(os.path.join(self.cdir, "router.addr")) as f:
            self.assertEqual(f.read().strip(), self.addr)
        procs = recorded(self.cdir)
        self.assertEqual([p[0] for p in procs], ["etcd", "node-0", "node-1", "node-2", "router"])
        for name, pid, st, addr in procs:
            self.assertTrue(rh.pid_running(pid), "%s (pid %d) not running" % (name, pid))
            self.assertNotEqual(addr, "-")
            self.assertTrue(os.path.isfile(os.path.join(self.cdir, name + ".log")))
        for n in ("node-0", "node-1", "node-2", "etcd"):
            self.assertTrue(os.path.isdir(os.path.join(self.cdir, n)), n + " data dir")
        st = rh.run([rh.CLUSTER_SH, "status", "--dir", self.cdir])
        self.assertEqual(st.returncode, 0, st.stdout + st.stderr)
        self.assertEqual(st.stdout.count(" alive "), 5, st.stdout)
        self.assertIn(self.addr, st.stdout)
        again = rh.run([rh.CLUSTER_SH, "start", "--nodes", "1", "--dir", self.cdir], timeout=60)
        self.assertEqual(again.returncode, 1, again.stdout + again.stderr)
        self.assertIn("already has a running cluster", again.stderr)
        self.assertEqual(recorded(self.cdir), procs, "a refused start changed the records")
        for name, pid, st_, _ in procs:
            self.assertTrue(rh.pid_running(pid), "%s died after a refused start" % name)
        bad = rh.run([rh.CLUSTER_SH, "start", "--dir", self.cdir, "--nodes", "x"])
        self.assertEqual(bad.returncode, 2)

    def test_2_cli_workflow(self):
        self.cli("create", "cli", "--dim", str(DIM), "--shards", "3", "--ef", "64")
        p = self.cli("create", "cli", "--dim", str(DIM), expect=1)
        self.assertIn("ALREADY_EXISTS", p.stderr)
        self.cli("create", "cli2", expect=2)  # --dim missing
        self.cli("create", "bad name", "--dim", "4", expect=1)

        self.cli("load", "cli", self.files["base.fvecs"], "--batch", "500")
        d = self.last_json(self.cli("describe", "cli", "--json"))
        self.assertEqual(d.get("count"), N, d)

        p = self.cli("search", "cli", "--query", self.files["query.fvecs"], "--gt",
                     self.files["gt.ivecs"], "--k", "10", "--ef", "64", "--concurrency", "4",
                     "--json")
        s = self.last_json(p)
        for key in ("recall", "qps", "p50_ms", "p99_ms"):
            self.assertIn(key, s)
        print("\nCLI search: recall %.4f, %.0f QPS, p50 %.3f ms, p99 %.3f ms" %
              (s["recall"], s["qps"], s["p50_ms"], s["p99_ms"]))
        self.assertGreaterEqual(s["recall"], 0.95)
        self.assertGreater(s["qps"], 0)
        self.assertLessEqual(s["p50_ms"], s["p99_ms"])
        # The CLI's recall is the real one: at ef 10, where recall is well
        # below 1, it equals the recall of the router's own answers.
        low = self.last_json(self.cli(
            "search", "cli", "--query", self.files["query.fvecs"], "--gt",
            self.files["gt.ivecs"], "--k", "10", "--ef", "10", "--concurrency", "2", "--json"))
        ch = rh.channel(self.addr)
        try:
            r = rh.vecshard_pb2_grpc.VecShardStub(ch).Search(
                rh.search_request("cli", self.queries, k=10, ef=10), timeout=30)
        finally:
            ch.close()
        rec = vsdata.recall(self.gt, [[h.id for h in x.hits] for x in r.results], 10)
        print("CLI search at ef 10: recall %.4f (router's answers: %.4f)" % (low["recall"], rec))
        self.assertLess(rec, 0.999, "data too easy to tell recalls apart")
        self.assertAlmostEqual(low["recall"], rec, places=4)
        self.assertEqual((low["n"], low["k"], low["ef"]), (NQ, 10, 10))

        st = self.last_json(self.cli("status", "--json"))
        self.assertEqual(sorted(n["id"] for n in st["nodes"] if n.get("alive")),
                         ["node-0", "node-1", "node-2"], st)
        self.assertIn("cli", self.cli("status").stdout)
        self.assertIn("cli", self.cli("list").stdout)
        lst = self.last_json(self.cli("list", "--json"))
        names = [c["name"] for c in (lst["collections"] if isinstance(lst, dict) else lst)]
        self.assertIn("cli", names)
        self.assertIn("cli", self.cli("describe", "cli").stdout)

        self.cli("search", "nosuch", "--query", self.files["query.fvecs"], expect=1)
        self.cli("search", "cli", "--query", os.path.join(self.dir, "absent.fvecs"), expect=1)
        self.cli("drop", "cli")
        self.cli("describe", "cli", expect=1)
        self.cli("drop", "cli", expect=1)
        self.assertNotIn("cli", self.cli("list").stdout.split())

    def test_2b_readme_python_snippet(self):
        """The README's Python examples (the vecshard client, then the
        vecshard.hnswlib one), pasted as a user would: its export lines run
        in the repository root (with /tmp/vs replaced by this cluster's
        dir), then each snippet from an unrelated directory."""
        with open(os.path.join(harness.REPO, "README.md")) as f:
            readme = f.read()
        start = readme.index("From Python")
        blocks = re.findall(r"```(\w*)\n(.*?)```", readme[start:], re.S)
        exports, code, hnsw = blocks[0][1], blocks[1][1], blocks[2][1]
        self.assertEqual((blocks[1][0], blocks[2][0]), ("python", "python"))
        self.assertIn("export PYTHONPATH=", exports)
        self.assertIn("import vecshard.hnswlib as hnswlib", hnsw)
        exports = exports.replace("/tmp/vs", self.cdir)
        elsewhere = tempfile.mkdtemp(prefix="vs-it-snippet-", dir=self.dir)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VECSHARD_ROUTER")}
        outs = []
        for i, text in enumerate((code, hnsw + "print(labels.shape, labels.dtype, "
                                  "distances.dtype)\n")):
            snippet = os.path.join(self.dir, "snippet%d.py" % i)
            with open(snippet, "w") as f:
                f.write(text)
            script = "set -e\ncd %s\n%s\ncd %s\n/usr/bin/python3 %s\n" % (
                harness.REPO, exports, elsewhere, snippet)
            p = subprocess.run(["bash", "-c", script], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            outs.append(p.stdout.strip())
        self.assertEqual(outs, ["1 b'hello'", "(5, 2) uint64 float32"])
        # The hnswlib Index's automatically named collection went with the process.
        self.assertNotIn("hnswlib-", self.cli("list").stdout)
        self.cli("drop", "docs")

    def test_3_stop_leaves_nothing(self):
        procs = recorded(self.cdir)
        p = rh.run([rh.CLUSTER_SH, "stop", "--dir", self.cdir], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for name, pid, st, _ in procs:
            self.assertFalse(rh.pid_running(pid) and starttime(pid) == st,
                             "%s (pid %d) still running after stop" % (name, pid))
        st = rh.run([rh.CLUSTER_SH, "status", "--dir", self.cdir])
        self.assertEqual(st.returncode, 1)
        self.assertEqual(st.stdout.count(" dead "), 5, st.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.cdir, "router.addr")))
        # Stopping twice is harmless.
        self.assertEqual(rh.run([rh.CLUSTER_SH, "stop", "--dir", self.cdir]).returncode, 0)

    def test_4_failed_start_stops_what_it_started(self):
        # A build dir whose router exits at once: etcd and both nodes have
        # been started by then and must be stopped again.
        fake = os.path.join(self.dir, "fakebuild")
        os.makedirs(fake)
        os.symlink(os.path.join(harness.BUILD, "vecshard-node"),
                   os.path.join(fake, "vecshard-node"))
        with open(os.path.join(fake, "vecshard-router"), "w") as f:
            f.write("#!/bin/sh\necho 'router: cannot start (test)' >&2\nexit 3\n")
        os.chmod(os.path.join(fake, "vecshard-router"), 0o755)
        d = os.path.join(self.dir, "failed")
        p = rh.run([rh.CLUSTER_SH, "start", "--nodes", "2", "--dir", d, "--build", fake],
                   timeout=120)
        try:
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertEqual(p.stdout, "")
            self.assertIn("router: cannot start (test)", p.stderr)
            procs = recorded(d)
            self.assertEqual([x[0] for x in procs], ["etcd", "node-0", "node-1", "router"])
            for name, pid, st, _ in procs:
                self.assertFalse(rh.pid_running(pid) and starttime(pid) == st,
                                 "%s (pid %d) left running by a failed start" % (name, pid))
            self.assertFalse(os.path.exists(os.path.join(d, "router.addr")))
        finally:
            for name, pid, st, _ in recorded(d):
                if starttime(pid) == st:
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    unittest.main()
