// Side-by-side benchmark: chat-server (release build) and the Node.js
// reference (bench/node-reference: socket.io 4.8 + @socket.io/redis-adapter),
// same machine, same load from chatscale-load, one table at the end. A third
// server, the floor (bench/floor: a bare tokio-tungstenite room broadcast, no
// Socket.IO framing), runs the idle and one-process broadcast scenarios
// (chatscale-load --protocol floor): how far each server is from the cost of
// the kernel and the bare WebSocket protocol.
//
//   1. Idle connections: RSS per connection at 10k and 19.5k on one process,
//      and 100k spread over several server processes (and client processes:
//      each process here may hold at most 20,000 open files).
//   2. Room broadcast at fixed offered rates: delivered messages/s and
//      send-to-receive p50/p99, on one process (no Redis) and on three
//      processes on one Redis (clients spread directly over the three ports,
//      round robin per room member: no proxy in between).
//   3. AI streaming: concurrent demo answers at 50 tokens/s on one process on
//      Redis: chunk events per answer, Redis commands executed per answer
//      (INFO commandstats delta over the hold: commands inside scripts too),
//      p99 gap between chunks. Then a short run with fewer answers under a
//      Redis MONITOR: commands the server sent per answer (a script call is
//      one), apart from those its scripts ran.
//   4. CPU seconds (utime+stime of the server processes over the hold) per
//      million delivered messages.
//
// Run with `make bench`. Without make:
//   CHAT_SERVER_BIN=target/release/chat-server LOAD_BIN=target/release/chatscale-load \
//     FLOOR_BIN=target/release/chatscale-floor node bench/compare.mjs
// Tunables (env), for a smaller run while developing:
//   BENCH_SCALE=0.1        multiplies every connection count (default 1)
//   BENCH_IDLE=10000,19500 idle sizes on one process
//   BENCH_IDLE_BIG=100000  the size across processes (0 skips it)
//   BENCH_BIG_PROCS=6      server and client processes for the big size
//   BENCH_RATES=1000,3000  offered chat lines/s (rooms of 10: x10 delivered)
//   BENCH_HOLD=8           seconds of each broadcast hold
//   BENCH_ANSWERS=1000     concurrent AI answers   BENCH_TOKENS=200 tokens each
//   BENCH_COUNT_ANSWERS=50 answers of the MONITOR run (Redis commands sent)
//   BENCH_SERVERS=ours,node,floor which servers to run
// Progress goes to stderr; the table to stdout; every JSON report to
// target/bench/ (BENCH_OUT).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedis } from '../tests/js/lib/redis.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const CHAT_SERVER_BIN = process.env.CHAT_SERVER_BIN ?? join(root, 'target/release/chat-server');
const LOAD_BIN = process.env.LOAD_BIN ?? join(root, 'target/release/chatscale-load');
const FLOOR_BIN = process.env.FLOOR_BIN ?? join(root, 'target/release/chatscale-floor');
const NODE_REF = join(here, 'node-reference/server.mjs');
const OUT = process.env.BENCH_OUT ?? join(root, 'target/bench');
mkdirSync(OUT, { recursive: true });

const env = process.env;
const list = (value, fallback) => (value ? value.split(',').map(Number).filter((n) => n > 0) : fallback);
const SCALE = Number(env.BENCH_SCALE ?? 1);
const scaled = (n) => Math.max(10, Math.round(n * SCALE));
const IDLE = list(env.BENCH_IDLE, [10_000, 19_500]).map(scaled);
const IDLE_BIG = env.BENCH_IDLE_BIG === '0' ? 0 : scaled(Number(env.BENCH_IDLE_BIG ?? 100_000));
const BIG_PROCS = Number(env.BENCH_BIG_PROCS ?? 6);
const RATES = list(env.BENCH_RATES, [1000, 3000]);
const HOLD = Number(env.BENCH_HOLD ?? 8);
const ANSWERS = scaled(Number(env.BENCH_ANSWERS ?? 1000));
const TOKENS = Number(env.BENCH_TOKENS ?? 200);
const COUNT_ANSWERS = scaled(Number(env.BENCH_COUNT_ANSWERS ?? 50));
const TOKEN_RATE = 50;
const BROADCAST_CONNS = scaled(1000);
const ROOM_SIZE = 10;
const SERVERS = (env.BENCH_SERVERS ?? 'ours,node,floor').split(',');

const log = (...a) => console.error('[bench]', ...a);

// ---------------------------------------------------------------- processes

const running = new Set();
process.once('exit', () => { for (const c of running) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

/** Starts one server of `kind` and resolves {url, pid, stop} once it listens. */
function startServer(kind, { redisUrl, extra = [] } = {}) {
  if (kind === 'floor' && redisUrl) throw new Error('the floor has no Redis mode');
  const [cmd, args, pattern] = kind === 'ours'
    ? [CHAT_SERVER_BIN, ['--host', '127.0.0.1', '--port', '0', '--admin-port', '0',
      '--demo-tokens-per-sec', String(TOKEN_RATE), '--demo-answer-tokens', String(TOKENS),
      ...(redisUrl ? ['--redis-url', redisUrl] : []), ...extra],
    /chat-server listening on (http:\/\/\S+)/]
    : kind === 'floor'
      ? [FLOOR_BIN, ['--host', '127.0.0.1', '--port', '0', ...extra], /chatscale-floor listening on (http:\/\/\S+)/]
      : [process.execPath, [NODE_REF, '--host', '127.0.0.1', '--port', '0',
        '--demo-tokens-per-sec', String(TOKEN_RATE), '--demo-answer-tokens', String(TOKENS),
        ...(redisUrl ? ['--redis-url', redisUrl] : []), ...extra],
      /node-reference listening on (http:\/\/\S+)/];
  const child = spawn(cmd, args, {
    env: { ...env, CHAT_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  const exited = new Promise((r) => child.once('exit', r));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not start:\n${out}`)), 30_000);
    const onData = (d) => {
      out += d;
      if (out.length > 100_000) out = out.slice(-50_000);
      const m = pattern.exec(out);
      if (m && timer) {
        clearTimeout(timer);
        resolvePromise({
          url: m[1],
          pid: child.pid,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await exited;
            running.delete(child);
          },
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    exited.then((code) => { clearTimeout(timer); reject(new Error(`${kind} exited (${code}):\n${out}`)); });
  });
}

let runs = 0;
/** Runs chatscale-load against servers of `kind` and returns its JSON report (null if it failed). */
function load(kind, name, args) {
  const json = join(OUT, `${String(++runs).padStart(2, '0')}-${name}.json`);
  const protocol = kind === 'floor' ? ['--protocol', 'floor'] : [];
  return new Promise((resolvePromise) => {
    const child = spawn(LOAD_BIN, [...args, ...protocol, '--label', name, '--json', json],
      { stdio: ['ignore', 'inherit', 'inherit'] });
    running.add(child);
    child.once('exit', (code) => {
      running.delete(child);
      if (code !== 0) {
        log(`${name}: chatscale-load exited with ${code}`);
        return resolvePromise(null);
      }
      resolvePromise(JSON.parse(readFileSync(json, 'utf8')));
    });
  });
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- scenarios

async function idle(kind, conns) {
  log(`${kind}: ${conns} idle connections on one process`);
  const server = await startServer(kind);
  try {
    return await load(kind, `${kind}-idle-${conns}`, ['--url', server.url, '--connections', String(conns),
      '--rooms', String(Math.ceil(conns / ROOM_SIZE)), '--hold-secs', '3', '--settle-secs', '3',
      '--connect-rate', '4000', '--pids', String(server.pid), '--source-ips', '8']);
  } finally { await server.stop(); }
}

async function idleBig(kind, conns) {
  const procs = Math.max(BIG_PROCS, Math.ceil(conns / 19_000));
  log(`${kind}: ${conns} idle connections over ${procs} server and ${procs} client processes`);
  const servers = await Promise.all(Array.from({ length: procs }, () => startServer(kind)));
  try {
    return await load(kind, `${kind}-idle-${conns}`, ['--url', servers.map((s) => s.url).join(','),
      '--connections', String(conns), '--rooms', String(Math.ceil(conns / ROOM_SIZE)),
      '--processes', String(procs), '--max-in-flight', '128', '--hold-secs', '3', '--settle-secs', '3',
      '--connect-rate', '4000', '--pids', servers.map((s) => s.pid).join(','), '--source-ips', '32',
      '--handshake-timeout-secs', '60']);
  } finally { await Promise.all(servers.map((s) => s.stop())); }
}

async function broadcast(kind, serverCount, rate) {
  const redis = serverCount > 1 ? await startRedis() : null;
  const servers = await Promise.all(Array.from({ length: serverCount },
    () => startServer(kind, { redisUrl: redis?.url })));
  log(`${kind}: broadcast at ${rate} lines/s on ${serverCount} process(es)${redis ? ' on Redis' : ''}`);
  try {
    return await load(kind, `${kind}-broadcast-${serverCount}p-${rate}`, ['--url', servers.map((s) => s.url).join(','),
      '--connections', String(BROADCAST_CONNS), '--rooms', String(BROADCAST_CONNS / ROOM_SIZE),
      '--rate', String(rate), '--hold-secs', String(HOLD), '--settle-secs', '1',
      '--pids', servers.map((s) => s.pid).join(','), ...(redis ? ['--redis-port', String(redis.port)] : [])]);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await redis?.stop();
  }
}

// `monitor`: the load holds a Redis MONITOR over the hold and counts the
// commands the server sent apart from those run inside its scripts (MONITOR
// slows Redis down, hence a run of its own with fewer answers).
async function aiStreaming(kind, answers, { monitor = false } = {}) {
  const redis = await startRedis();
  const server = await startServer(kind, { redisUrl: redis.url });
  log(`${kind}: ${answers} concurrent answers of ${TOKENS} tokens at ${TOKEN_RATE} tokens/s on Redis`
    + `${monitor ? ' under MONITOR' : ''}`);
  try {
    // One asker and one listener per room.
    return await load(kind, `${kind}-ai-${answers}${monitor ? '-monitor' : ''}`, ['--url', server.url,
      '--connections', String(answers * 2),
      '--rooms', String(answers), '--ai-queries', String(answers), '--hold-secs', '1', '--settle-secs', '1',
      '--drain-secs', String(Math.ceil(TOKENS / TOKEN_RATE) * 6 + 30), '--pids', String(server.pid),
      '--redis-port', String(redis.port), ...(monitor ? ['--redis-monitor'] : [])]);
  } finally {
    await server.stop();
    await redis.stop();
  }
}

// ---------------------------------------------------------------- run

const started = Date.now();
const results = {};
for (const kind of SERVERS) {
  const r = { idle: {}, broadcast1: {}, broadcast3: {} };
  results[kind] = r;
  for (const conns of IDLE) r.idle[conns] = await idle(kind, conns);
  if (IDLE_BIG) r.idleBig = await idleBig(kind, IDLE_BIG);
  for (const rate of RATES) r.broadcast1[rate] = await broadcast(kind, 1, rate);
  // The floor has no Redis mode and no AI answers.
  if (kind === 'floor') continue;
  for (const rate of RATES) r.broadcast3[rate] = await broadcast(kind, 3, rate);
  r.ai = await aiStreaming(kind, ANSWERS);
  r.aiCount = await aiStreaming(kind, COUNT_ANSWERS, { monitor: true });
}
writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 2));

// ---------------------------------------------------------------- table

const fmt = (v, digits = 1) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a'
  : Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits));
const rows = [];
const KINDS = ['ours', 'node', 'floor'];
const row = (label, get, digits) => {
  const [ours, node, floor] = KINDS.map((k) => {
    try { return results[k] ? get(results[k]) : undefined; } catch { return undefined; }
  });
  const ratio = (a, b) => (a !== undefined && a !== null && b ? `${(a / b).toFixed(2)}x` : 'n/a');
  rows.push([label, fmt(ours, digits), fmt(node, digits), fmt(floor, digits), ratio(ours, node), ratio(ours, floor)]);
};
const kb = (r) => r.server_totals.rss_per_connection_bytes / 1024;
const errs = (r) => r.errors.total;

for (const conns of IDLE) {
  row(`1. idle ${conns.toLocaleString('en-US')} on 1 process: RSS per connection (KB)`, (r) => kb(r.idle[conns]));
  row(`   idle ${conns.toLocaleString('en-US')}: connections established`, (r) => r.idle[conns].connections.established, 0);
  row(`   idle ${conns.toLocaleString('en-US')}: connects per second`, (r) => r.idle[conns].connections.connects_per_second, 0);
}
if (IDLE_BIG) {
  row(`   idle ${IDLE_BIG.toLocaleString('en-US')} over ${Math.max(BIG_PROCS, Math.ceil(IDLE_BIG / 19_000))} processes: established`,
    (r) => r.idleBig.connections.established, 0);
  row(`   idle ${IDLE_BIG.toLocaleString('en-US')}: RSS per connection (KB)`, (r) => kb(r.idleBig));
  row(`   idle ${IDLE_BIG.toLocaleString('en-US')}: total server RSS (MB)`,
    (r) => sum(r.idleBig.servers.map((s) => s.rss_ramped_bytes)) / 1048576, 0);
}
for (const [key, label] of [['broadcast1', '1 process'], ['broadcast3', '3 processes + Redis']]) {
  for (const rate of RATES) {
    const t = `2. broadcast ${label}, ${rate}/s offered x${ROOM_SIZE}`;
    row(`${t}: delivered/s`, (r) => r[key][rate].messages.delivered_per_second, 0);
    row(`   p50 latency (ms)`, (r) => r[key][rate].messages.latency.p50_ms, 2);
    row(`   p99 latency (ms)`, (r) => r[key][rate].messages.latency.p99_ms, 2);
    row(`   lost + errors`, (r) => r[key][rate].messages.lost + errs(r[key][rate]), 0);
  }
}
row(`3. AI ${ANSWERS} answers x ${TOKENS} tokens at ${TOKEN_RATE}/s: answers completed`, (r) => r.ai.ai.answers_done, 0);
row('   chunk events per answer', (r) => r.ai.ai.chunks_per_answer);
row('   Redis commands executed per answer (incl. inside scripts)', (r) => r.ai.redis.commands_per_answer);
row('   p99 gap between chunks (ms)', (r) => r.ai.ai.chunk_gap.p99_ms);
row('   server CPU seconds for all answers', (r) => r.ai.server_totals.cpu_hold_seconds, 2);
row(`3. AI ${COUNT_ANSWERS} answers under Redis MONITOR: answers completed`, (r) => r.aiCount.ai.answers_done, 0);
row('   Redis commands sent per answer', (r) => r.aiCount.redis.monitor.sent_per_answer);
row('   Redis commands executed per answer (incl. inside scripts)',
  (r) => r.aiCount.redis.monitor.executed_per_answer);
for (const [key, label] of [['broadcast1', '1 process'], ['broadcast3', '3 processes']]) {
  for (const rate of RATES) {
    row(`4. CPU s per million delivered (${label}, ${rate}/s)`,
      (r) => r[key][rate].server_totals.cpu_seconds_per_million_delivered);
    row('   of which kernel (system time, %)', (r) => 100 * r[key][rate].server_totals.cpu_hold_system_seconds
      / r[key][rate].server_totals.cpu_hold_seconds, 0);
  }
}

const header = ['metric', 'chatscale (Rust)', 'Node socket.io', 'floor (bare WS)', 'ours / Node', 'ours / floor'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
const out = [
  `chatscale bench: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, `
    + `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}, ${((Date.now() - started) / 1000).toFixed(0)} s`,
  `scale ${SCALE}; broadcast: ${BROADCAST_CONNS} clients in rooms of ${ROOM_SIZE}, ${HOLD} s per rate; `
    + '3 processes: clients spread directly over the three ports (no proxy); '
    + 'floor: bare tokio-tungstenite broadcast, no Redis mode or AI (n/a); reports in ' + OUT,
  '',
  line(header),
  `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
  ...rows.map(line),
];
console.log(out.join('\n'));
