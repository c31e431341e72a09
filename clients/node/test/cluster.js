// cluster.js — a real local vecshard cluster for the client tests:
// deploy/local/cluster.sh (etcd, N vecshard-node, one vecshard-router on
// free loopback ports) in a fresh temporary directory, extra routers
// started on a chosen port, and one recorded process stopped on purpose. Everything started here is stopped by
// cluster.sh (by recorded pid) or by the child's own pid, also when the
// test process exits on a failure.
'use strict';

const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BUILD = process.env.VS_BUILD || path.join(REPO, 'build');
const CLUSTER_SH = path.join(REPO, 'deploy', 'local', 'cluster.sh');

// Starts a cluster of `nodes` nodes; returns {dir, router, etcd, stop}.
function startCluster(nodes = 2) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vs-node-client-'));
  const env = { ...process.env, VS_BUILD: BUILD };
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    spawnSync(CLUSTER_SH, ['stop', '--dir', dir], { env, stdio: 'inherit' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      stop();
      process.exit(130);
    });
  }
  const r = spawnSync(CLUSTER_SH, ['start', '--dir', dir, '--nodes', String(nodes), '--fsync', 'none'], {
    env,
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    stop();
    throw new Error(`cluster.sh start failed (${r.status}): ${r.stderr}`);
  }
  return {
    dir,
    router: fs.readFileSync(path.join(dir, 'router.addr'), 'utf8').trim(),
    etcd: fs.readFileSync(path.join(dir, 'etcd.addr'), 'utf8').trim(),
    stop,
  };
}

// Field 22 of /proc/pid/stat (start time in clock ticks), or null.
function startTime(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return null;
  }
}

// Stops one process cluster.sh recorded (e.g. "node-1") with SIGTERM, by
// its recorded pid and only while its start time still matches; resolves
// once it has exited.
async function stopProcess(cluster, name) {
  const line = fs
    .readFileSync(path.join(cluster.dir, 'procs'), 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[0] === name);
  if (!line) throw new Error(`${name} is not in ${cluster.dir}/procs`);
  const [, pid, st] = line.split(' ');
  if (startTime(pid) !== st) throw new Error(`${name} (pid ${pid}) is not running`);
  process.kill(Number(pid), 'SIGTERM');
  const until = Date.now() + 90000;
  while (Date.now() < until) {
    let status;
    try {
      status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return;
    }
    // gone, a zombie (cluster.sh's setsid child is not ours to reap), or the pid reused
    if (/^State:\s+Z/m.test(status) || startTime(pid) !== st) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${name} (pid ${pid}) did not exit within 90 s of SIGTERM`);
}

// A 127.0.0.1 port nothing listens on (bound and released).
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts another vecshard-router on 127.0.0.1:port against the cluster's
// etcd; resolves to {stop} once it printed its "listening on" line.
function startRouter(cluster, port) {
  const child = spawn(path.join(BUILD, 'vecshard-router'), ['--listen', `127.0.0.1:${port}`, '--etcd', cluster.etcd], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const onExit = () => child.kill('SIGKILL');
  process.on('exit', onExit);
  const stop = () =>
    new Promise((resolve) => {
      process.removeListener('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => {
      out += d;
      if (/^listening on /m.test(out)) resolve({ stop });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vecshard-router exited (${code}): ${out}`)));
  });
}

module.exports = { startCluster, startRouter, stopProcess, freePort, BUILD };
