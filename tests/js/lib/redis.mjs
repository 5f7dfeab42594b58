// Starts a real redis-server (Debian package) on a free loopback port, with no
// persistence, and can kill and restart it on the same port for fault tests.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcpConnect } from 'node:net';
import { promisify } from 'node:util';
import { waitFor } from './wait.mjs';
import { freePort } from './ports.mjs';


const run = promisify(execFile);

function answersPing(port) {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => { socket.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
}

export async function startRedis() {
  const port = await freePort();
  let child;
  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' });
    await waitFor(() => answersPing(port), { timeoutMs: 10_000, what: `redis-server on ${port}` });
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  await launch();
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    /** Kills the server (SIGKILL: a crash, not a clean shutdown). */
    kill,
    /** Starts it again on the same port, empty. */
    restart: launch,
    stop: kill,
    /** Runs a redis-cli command and returns its output. */
    async cli(...args) {
      const { stdout } = await run('redis-cli', ['-p', String(port), ...args]);
      return stdout;
    },
  };
}

/**
 * Starts a Redis Cluster of `count` masters (no replicas) on free ports, in a
 * temp dir, and waits for cluster_state:ok. `url` is a seed node.
 */
export async function startRedisCluster(count = 3) {
  const dir = await mkdtemp(join(tmpdir(), 'chatscale-redis-cluster-'));
  const ports = [];
  const children = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    ports.push(port);
    children.push(spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '2000', '--dir', dir,
    ], { stdio: 'ignore' }));
  }
  const killAll = () => children.forEach((c) => c.kill('SIGKILL'));
  process.once('exit', killAll);
  for (const port of ports) await waitFor(() => answersPing(port), { what: `cluster node ${port}` });
  await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  const cli = async (port, ...args) => (await run('redis-cli', ['-p', String(port), ...args])).stdout;
  for (const port of ports) {
    await waitFor(async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'), { what: `cluster state on ${port}` });
  }
  return {
    ports,
    url: `redis://127.0.0.1:${ports[0]}`,
    cli,
    async stop() {
      await Promise.all(children.map((c) => new Promise((r) => {
        if (c.exitCode !== null || c.signalCode !== null) return r();
        c.once('exit', r);
        c.kill('SIGKILL');
      })));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
