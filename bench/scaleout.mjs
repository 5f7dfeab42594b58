// Scale-out benchmark: 3 chat-servers (release binary) on one redis-server.
//
//   1. Cross-server room broadcast at fixed offered rates: delivered rate,
//      send->receive latency (p50/p99/max) for receivers on another server
//      than the sender, losses, and the servers' own
//      chat_cross_server_delay_seconds histogram.
//   2. Redis commands per AI answer (INFO commandstats deltas) with default
//      chunk batching vs one chunk per token, at 50 and 500 tokens/s.
//
// It prints numbers; it asserts nothing. Run with `make bench` (it builds the
// release binary and sets CHAT_SERVER_BIN), or:
//   CHAT_SERVER_BIN=target/release/chat-server node bench/scaleout.mjs
// Tunables (env): BENCH_RATES=200,1000  BENCH_SECONDS=5  BENCH_ANSWERS=20
//   BENCH_TOKENS=200  BENCH_TOKEN_RATES=50,500
import { startServer, scrapeMetrics, serverBin } from '../tests/js/lib/server.mjs';
import { connect, ask, record } from '../tests/js/lib/client.mjs';
import { startRedis } from '../tests/js/lib/redis.mjs';
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { cleanups, cleanup } from './lib/cleanup.mjs';
import { sleep, log, table, join, joinRetries } from './lib/common.mjs';

const list = (value, fallback) => (value ? value.split(',').map(Number) : fallback);
const RATES = list(process.env.BENCH_RATES, [200, 1000]);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ANSWERS = Number(process.env.BENCH_ANSWERS ?? 20);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 200);
const TOKEN_RATES = list(process.env.BENCH_TOKEN_RATES, [50, 500]);
const SERVERS = 3;
const CLIENTS = 30;
const ROOMS = 3;


/** A fresh redis-server and `count` chat-servers on it. */
async function cluster(args = []) {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const servers = await Promise.all(Array.from({ length: SERVERS }, async () => {
    const server = await startServer(['--redis-url', redis.url, ...args], { env: { CHAT_LOG: 'warn' } });
    cleanups.push(() => server.stop());
    return server;
  }));
  const sockets = [];
  return {
    redis,
    servers,
    async client(serverIndex) {
      const socket = await connect(servers[serverIndex].url, { transports: ['websocket'] });
      sockets.push(socket);
      cleanups.push(() => socket.close());
      return socket;
    },
    async close() {
      for (const s of sockets) s.close();
      const dead = servers.filter((s) => !s.alive());
      for (const s of dead) log(`a chat-server died:\n${s.logs().slice(-2000)}`);
      await Promise.all(servers.map((s) => s.stop()));
      await redis.stop();
      if (dead.length) throw new Error(`${dead.length} chat-server(s) exited during the bench`);
    },
  };
}

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Upper bucket bound holding quantile q of a Prometheus histogram delta. */
function histogramQuantile(buckets, count, q) {
  if (!count) return NaN;
  for (const [le, n] of buckets) if (n >= q * count) return le;
  return Infinity;
}

function histogram(metrics, name) {
  const buckets = [];
  for (const [key, value] of metrics) {
    const m = /_bucket\{le="([^"]+)"\}$/.exec(key);
    if (key.startsWith(`${name}_bucket`) && m) buckets.push([Number(m[1]), value]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  return { count: metrics.get(`${name}_count`) ?? 0, sum: metrics.get(`${name}_sum`) ?? 0, buckets };
}

function histogramDelta(before, after) {
  return {
    count: after.count - before.count,
    sum: after.sum - before.sum,
    buckets: after.buckets.map(([le, n], i) => [le, n - (before.buckets[i]?.[1] ?? 0)]),
  };
}

/** CPU seconds used so far by this process's children, summed by command (chat-server, redis-server). */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
function childrenCpu() {
  const byComm = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { continue; }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' '); // fields[0] = state (field 3)
    if (Number(fields[1]) !== process.pid) continue;
    const seconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
    byComm.set(comm, (byComm.get(comm) ?? 0) + seconds);
  }
  return byComm;
}

/** Starts a CPU meter; `stop()` returns CPU % (100 = one core) of the bench, the chat-servers and Redis. */
function cpuMeter() {
  const wall = performance.now();
  const own = process.cpuUsage();
  const kids = childrenCpu();
  return () => {
    const seconds = (performance.now() - wall) / 1000;
    const used = process.cpuUsage(own);
    const now = childrenCpu();
    const pct = (comm) => (100 * ((now.get(comm) ?? 0) - (kids.get(comm) ?? 0))) / seconds;
    return {
      client: (100 * (used.user + used.system)) / 1e6 / seconds,
      servers: pct('chat-server'),
      redis: pct('redis-server'),
    };
  };
}

const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : String(n));

// ------------------------------------------------ 1. cross-server broadcast

async function broadcastBench() {
  log(`broadcast: ${SERVERS} servers, ${CLIENTS} clients in ${ROOMS} rooms, rates ${RATES.join(', ')} msg/s for ${SECONDS} s`);
  const c = await cluster();
  try {
    const perRoom = CLIENTS / ROOMS;
    const clients = [];
    for (let i = 0; i < CLIENTS; i++) {
      const server = i % SERVERS;
      const room = `bench-${Math.floor(i / perRoom)}`;
      const socket = await c.client(server);
      await join(socket, room);
      clients.push({ i, server, room, socket });
    }
    // Cross-server receivers of a message = room members on another server.
    const crossReceivers = (sender) =>
      clients.filter((x) => x.room === sender.room && x.server !== sender.server).length;

    let phase = null; // the stats of the phase in progress
    const sent = new Map(); // clientId -> {at, server, expected}
    for (const receiver of clients) {
      receiver.socket.on('message', (m) => {
        const at = performance.now();
        const s = sent.get(m.clientId);
        if (!s || !phase || s.phase !== phase) return;
        if (s.server === receiver.server) { phase.local += 1; phase.localLatencies.push(at - s.at); return; }
        phase.latencies.push(at - s.at);
        phase.lastAt = at;
      });
    }

    async function run(rate, seconds, label) {
      const stats = {
        label, rate, latencies: [], localLatencies: [], ackLatencies: [], local: 0, sent: 0, expected: 0, acked: 0, ackErrors: 0,
        firstAt: 0, lastAt: 0, sendEnd: 0,
      };
      phase = stats;
      const before = await Promise.all(c.servers.map((s) => scrapeMetrics(s.adminUrl)));
      const cpu = cpuMeter();
      const total = Math.round(rate * seconds);
      let next = 0;
      const start = performance.now();
      stats.firstAt = start;
      // Open-loop schedule: message k is due at start + k/rate; a 2 ms timer
      // sends whatever is due (senders round-robin over all 30 clients).
      await new Promise((done) => {
        const timer = setInterval(() => {
          const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
          for (; next < due; next++) {
            const sender = clients[next % clients.length];
            const clientId = `${label}-${next}`;
            const expected = crossReceivers(sender);
            sent.set(clientId, { at: performance.now(), server: sender.server, expected, phase: stats });
            stats.sent += 1;
            stats.expected += expected;
            const emitted = performance.now();
            sender.socket.emit('message', { room: sender.room, text: `bench ${next}`, clientId }, (ack) => {
              stats.ackLatencies.push(performance.now() - emitted);
              if (ack?.ok) stats.acked += 1; else stats.ackErrors += 1;
            });
          }
          if (next >= total) { clearInterval(timer); done(); }
        }, 2);
      });
      stats.sendEnd = performance.now();
      stats.cpu = cpu();
      // Drain: wait for every expected delivery, at most 5 s.
      const drainUntil = performance.now() + 5_000;
      while (stats.latencies.length < stats.expected && performance.now() < drainUntil) await sleep(20);
      while (stats.acked + stats.ackErrors < stats.sent && performance.now() < drainUntil) await sleep(20);
      phase = null;
      const after = await Promise.all(c.servers.map((s) => scrapeMetrics(s.adminUrl)));
      const name = 'chat_cross_server_delay_seconds';
      stats.serverDelay = after.map((a, i) => histogramDelta(histogram(before[i], name), histogram(a, name)));
      for (const [id, s] of sent) if (s.phase === stats) sent.delete(id);
      return stats;
    }

    await run(100, 1, 'warmup');
    const results = [];
    for (const rate of RATES) {
      log(`broadcast at ${rate} msg/s ...`);
      const s = await run(rate, SECONDS, `r${rate}`);
      const lat = s.latencies.sort((a, b) => a - b);
      const window = (s.lastAt - s.firstAt) / 1000;
      const merged = s.serverDelay.reduce((acc, h) => ({
        count: acc.count + h.count,
        sum: acc.sum + h.sum,
        buckets: h.buckets.map(([le, n], i) => [le, n + (acc.buckets[i]?.[1] ?? 0)]),
      }), { count: 0, sum: 0, buckets: [] });
      results.push({
        rate,
        sentPerSec: s.sent / ((s.sendEnd - s.firstAt) / 1000),
        msgs: s.sent,
        acked: s.acked,
        ackErrors: s.ackErrors,
        deliveries: lat.length,
        expected: s.expected,
        deliveredPerSec: lat.length / window,
        messagesPerSec: (lat.length / s.expected) * s.sent / window,
        p50: quantile(lat, 0.5),
        p99: quantile(lat, 0.99),
        max: lat.at(-1),
        lost: 1 - lat.length / s.expected,
        cpu: s.cpu,
        ackP50: quantile(s.ackLatencies.sort((a, b) => a - b), 0.5),
        ackP99: quantile(s.ackLatencies, 0.99),
        localP50: quantile(s.localLatencies.sort((a, b) => a - b), 0.5),
        localP99: quantile(s.localLatencies, 0.99),
        metricCounts: s.serverDelay.map((h) => h.count),
        metricMeanMs: (merged.sum / merged.count) * 1000,
        metricP50: histogramQuantile(merged.buckets, merged.count, 0.5) * 1000,
        metricP99: histogramQuantile(merged.buckets, merged.count, 0.99) * 1000,
      });
    }
    return results;
  } finally {
    await c.close();
  }
}

// ------------------------------------------------ 2. Redis commands per answer

function commandstats(text) {
  const calls = new Map();
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) calls.set(m[1], Number(m[2]));
  }
  return calls;
}

async function answersBench(tokensPerSec, perToken) {
  const args = ['--demo-tokens-per-sec', String(tokensPerSec), '--demo-answer-tokens', String(TOKENS)];
  if (perToken) args.push('--batch-max-chars', '1');
  const mode = perToken ? 'per-token' : 'batched';
  log(`answers: ${ANSWERS} x ${TOKENS} tokens at ${tokensPerSec} tokens/s, ${mode}`);
  const c = await cluster(args);
  try {
    // One room per answer, one member on each server; the asker rotates.
    const rooms = [];
    for (let k = 0; k < ANSWERS; k++) {
      const room = `ai-${k}`;
      const members = [];
      for (let s = 0; s < SERVERS; s++) {
        const socket = await c.client(s);
        const recorder = record(socket);
        await join(socket, room);
        members.push({ socket, recorder });
      }
      rooms.push({ room, members, asker: members[k % SERVERS] });
    }
    // Warm-up: every server appends once (loads the append script), then idle.
    for (let s = 0; s < SERVERS; s++) {
      const ack = await ask(rooms[0].members[s].socket, 'message', { room: 'ai-0', text: 'warm-up' });
      if (!ack.ok) throw new Error(`warm-up: ${JSON.stringify(ack)}`);
    }
    await sleep(300);

    const before = commandstats(await c.redis.cli('INFO', 'commandstats'));
    const started = performance.now();
    const cpu = cpuMeter();
    const acks = await Promise.all(rooms.map(({ room, asker }) =>
      ask(asker.socket, 'ai-query', { room, prompt: 'benchmark question' })));
    const bad = acks.find((a) => !a.ok);
    if (bad) throw new Error(`ai-query: ${JSON.stringify(bad)}`);
    const timeout = Math.max(30_000, (4 * TOKENS * 1000) / tokensPerSec);
    await Promise.all(rooms.flatMap(({ members }, k) =>
      members.map(({ recorder }) => recorder.done(acks[k].ok.streamId, timeout))));
    const elapsed = (performance.now() - started) / 1000;
    const cpuUsed = cpu();
    await sleep(300); // the answer joins the history after its last chunk
    const after = commandstats(await c.redis.cli('INFO', 'commandstats'));

    const delta = new Map();
    for (const [cmd, n] of after) {
      const d = n - (before.get(cmd) ?? 0);
      if (d) delta.set(cmd, d);
    }
    // Background: health PINGs (2 connections x 2/s per server) and our INFO.
    const background = new Set(['ping', 'info']);
    const total = [...delta].filter(([cmd]) => !background.has(cmd)).reduce((a, [, n]) => a + n, 0);
    const evals = (delta.get('evalsha') ?? 0) + (delta.get('eval') ?? 0);
    const publish = delta.get('publish') ?? 0;
    let chunks = 0;
    let incomplete = 0;
    for (const [k, { members }] of rooms.entries()) {
      const counts = members.map(({ recorder }) => recorder.stream(acks[k].ok.streamId).length);
      chunks += counts[0];
      if (new Set(counts).size !== 1) incomplete += 1;
    }
    return {
      tokensPerSec,
      mode,
      publish: publish / ANSWERS,
      evals: evals / ANSWERS,
      total: total / ANSWERS,
      chunks: chunks / ANSWERS,
      elapsed,
      cpu: cpuUsed,
      incomplete,
      breakdown: [...delta].filter(([cmd]) => !background.has(cmd))
        .sort((a, b) => b[1] - a[1]).map(([cmd, n]) => `${cmd}=${fmt(n / ANSWERS, 1)}`).join(' '),
    };
  } finally {
    await c.close();
  }
}

// ---------------------------------------------------------------- output

async function main() {
  const t0 = performance.now();
  log(`chat-server binary: ${serverBin}`);
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const broadcast = await broadcastBench();
  const answers = [];
  for (const rate of TOKEN_RATES) {
    for (const perToken of [false, true]) answers.push(await answersBench(rate, perToken));
  }

  console.log(`\n== 1. Cross-server room broadcast: ${SERVERS} servers + 1 Redis, ${CLIENTS} clients round-robin, ${ROOMS} rooms of ${CLIENTS / ROOMS}, ${SECONDS} s per rate`);
  console.log('   latency = sender emit -> receiver event, receivers on another server than the sender (one shared clock)');
  console.log(table(
    ['offered/s', 'sent/s', 'msgs', 'acked', 'x-deliv', 'deliv/s', 'msg/s', 'p50 ms', 'p99 ms', 'max ms', 'lost', 'metric count (s0/s1/s2)', 'metric mean/p50/p99 ms', 'cpu% bench/3 srv/redis'],
    broadcast.map((r) => [
      r.rate, fmt(r.sentPerSec, 0), r.msgs, `${r.acked}${r.ackErrors ? `+${r.ackErrors}err` : ''}`,
      `${r.deliveries}/${r.expected}`, fmt(r.deliveredPerSec, 0), fmt(r.messagesPerSec, 0),
      fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.max, 2), `${fmt(100 * r.lost, 2)}%`,
      r.metricCounts.join('/'), `${fmt(r.metricMeanMs, 2)}/<=${r.metricP50}/<=${r.metricP99}`,
      `${fmt(r.cpu.client, 0)}/${fmt(r.cpu.servers, 0)}/${fmt(r.cpu.redis, 0)}`,
    ]),
  ));
  for (const r of broadcast) {
    console.log(`   ${r.rate}/s for comparison: sender ack p50/p99 ${fmt(r.ackP50, 2)}/${fmt(r.ackP99, 2)} ms; same-server receivers p50/p99 ${fmt(r.localP50, 2)}/${fmt(r.localP99, 2)} ms`);
  }
  console.log('   cpu% = CPU used while sending (100 = one core) by the bench process (all 30 clients), the 3 chat-servers together, and redis-server');
  console.log('   deliv/s = cross-server deliveries per second at the receivers; msg/s = distinct messages per second;');
  console.log('   metric = chat_cross_server_delay_seconds delta per server (origin ts -> arrival, 1 ms clock; p50/p99 = bucket upper bounds)');

  console.log(`\n== 2. Redis commands per AI answer: ${ANSWERS} concurrent demo answers x ${TOKENS} tokens, one room each (a member on every server); INFO commandstats delta / ${ANSWERS}, PING+INFO excluded`);
  const rows = [];
  for (const rate of TOKEN_RATES) {
    const b = answers.find((a) => a.tokensPerSec === rate && a.mode === 'batched');
    const p = answers.find((a) => a.tokensPerSec === rate && a.mode === 'per-token');
    for (const a of [b, p]) {
      rows.push([
        rate, a.mode, fmt(a.chunks, 1), fmt(a.publish, 1), fmt(a.evals, 1), fmt(a.total, 1), fmt(a.elapsed, 2),
        `${fmt(a.cpu.client, 0)}/${fmt(a.cpu.servers, 0)}/${fmt(a.cpu.redis, 0)}`,
        a.incomplete ? `${a.incomplete} differ` : 'ok',
      ]);
    }
    rows.push([rate, 'ratio p/b', fmt(p.chunks / b.chunks, 2) + 'x', fmt(p.publish / b.publish, 2) + 'x',
      fmt(p.evals / b.evals, 2) + 'x', fmt(p.total / b.total, 2) + 'x', '', '', '']);
  }
  console.log(table(['tok/s', 'mode', 'chunks', 'PUBLISH', 'EVALSHA', 'total cmds', 'wall s', 'cpu% bench/srv/redis', 'members'], rows));
  console.log('   total cmds also counts the commands run inside the append script (INCR, XADD, ...): round trips per chunk = EVALSHA + PUBLISH; per answer:');
  for (const a of answers) console.log(`   ${String(a.tokensPerSec).padStart(4)} tok/s ${a.mode.padEnd(9)} ${a.breakdown}`);
  console.log(`\njoin acks lost and retried (first event after connect dropped by the server): ${joinRetries.count} of ${joinRetries.joins} joins`);
  console.log(`load average before the bench: ${load} (other work on this machine skews latencies)`);
  console.log(`(bench took ${fmt((performance.now() - t0) / 1000, 0)} s)`);
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
