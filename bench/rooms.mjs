// Room channels benchmark: chat-server's `--room-channels per-room` next to
// `--room-channels shared`, on a standalone redis-server and on a 3-master
// Redis Cluster (four runs, each on fresh Redis and fresh servers).
//
//   shared:   every room event goes out on one channel that every server
//             subscribes to (on Redis Cluster: one sharded channel, so one
//             shard carries all pub/sub traffic).
//   per-room: one channel per room, `PREFIX:{room}:events`; a server
//             subscribes only while it has a local member in the room.
//
// Each run: BENCH_SERVERS chat-servers, BENCH_ROOMS rooms of 2 members (half
// of the rooms have both members on one server, half on two neighbouring
// servers), BENCH_RATE chat lines/s in total, open loop, round-robin over the
// rooms, for BENCH_HOLD seconds after a warm-up. Over the hold it measures:
//   - per server, the delta of chat_redis_messages_received_total (every
//     pub/sub message the server got from Redis) per second, mean and max;
//   - Redis bytes out per second (INFO stats total_net_output_bytes deltas,
//     per node on the cluster, and the busiest node's share of the sum) and
//     Redis CPU (INFO cpu deltas, all nodes), and the chat-servers' CPU
//     (utime + stime from /proc);
//   - deliveries to the other member of each room, and the losses.
// The last line is `per-server inbound ratio R, max shard share S`: R = the
// larger over the Redis modes run of mean inbound per-room / shared, S = the
// busiest cluster node's share of Redis bytes out in the per-room cluster run.
//
// It prints numbers; it asserts nothing (it fails only if a chat-server dies
// or lacks the metric). Run with `make bench-rooms` (it builds the release
// binary and sets CHAT_SERVER_BIN), or:
//   CHAT_SERVER_BIN=target/release/chat-server node bench/rooms.mjs
// Tunables (env): BENCH_SERVERS=10  BENCH_ROOMS=200  BENCH_RATE=500
//   BENCH_HOLD=10  BENCH_MODES=standalone,cluster
import { startServer, scrapeMetrics, serverBin } from '../tests/js/lib/server.mjs';
import { connect } from '../tests/js/lib/client.mjs';
import { startRedis, startRedisCluster } from '../tests/js/lib/redis.mjs';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { cleanups, cleanup } from './lib/cleanup.mjs';
import { sleep, log, table, join } from './lib/common.mjs';

const SERVERS = Number(process.env.BENCH_SERVERS ?? 10);
const ROOMS = Number(process.env.BENCH_ROOMS ?? 200);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const HOLD = Number(process.env.BENCH_HOLD ?? 10);
const MODES = (process.env.BENCH_MODES ?? 'standalone,cluster').split(',').map((m) => m.trim()).filter(Boolean);
const CHANNELS = ['shared', 'per-room'];
const WARMUP = 2; // seconds at the offered rate before the hold
const METRIC = 'chat_redis_messages_received_total';

for (const mode of MODES) {
  if (!['standalone', 'cluster'].includes(mode)) throw new Error(`BENCH_MODES: unknown mode ${mode} (standalone, cluster)`);
}

const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

// ---------------------------------------------------------------- helpers

/** A fresh standalone Redis or 3-master cluster, as {url, ports, cli(port, ...args), stop}. */
async function freshRedis(mode) {
  if (mode === 'cluster') return startRedisCluster(3);
  const redis = await startRedis();
  return { url: redis.url, ports: [redis.port], cli: (_port, ...args) => redis.cli(...args), stop: () => redis.stop() };
}

/** total_net_output_bytes of each Redis node. */
async function bytesOut(redis) {
  return Promise.all(redis.ports.map(async (port) => {
    const m = /^total_net_output_bytes:(\d+)/m.exec(await redis.cli(port, 'INFO', 'stats'));
    return Number(m[1]);
  }));
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

/** utime + stime (seconds) of the chat-server processes, summed. */
function serverCpuSeconds(servers) {
  return servers.reduce((sum, s) => {
    const stat = readFileSync(`/proc/${s.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return sum + (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  }, 0);
}

/** used_cpu_sys + used_cpu_user (seconds) of each Redis node. */
async function cpuSeconds(redis) {
  return Promise.all(redis.ports.map(async (port) => {
    const info = await redis.cli(port, 'INFO', 'cpu');
    const field = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)[1]);
    return field('used_cpu_sys') + field('used_cpu_user');
  }));
}

/** chat_redis_messages_received_total of one server; fails if the server does not have it. */
async function inbound(server) {
  let metrics;
  try {
    metrics = await scrapeMetrics(server.adminUrl);
  } catch (error) {
    await sleep(100); // let the exit be seen
    if (!server.alive()) throw new Error(`a chat-server exited during the bench:\n${server.logs().slice(-2000)}`);
    throw error;
  }
  const value = metrics.get(METRIC);
  if (value === undefined) throw new Error(`${METRIC} missing: chat-server too old?`);
  return value;
}

/** Runs `work` over `items`, at most `width` at a time. */
async function pool(items, width, work) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

// ---------------------------------------------------------------- one run

async function run(redisMode, channels) {
  const label = `${redisMode} ${channels}`;
  log(`${label}: ${SERVERS} servers, ${ROOMS} rooms of 2, ${RATE} msg/s for ${HOLD} s`);
  const local = [];
  const redis = await freshRedis(redisMode);
  local.push(() => redis.stop());
  cleanups.push(() => redis.stop());

  const args = ['--redis-url', redis.url, '--room-channels', channels];
  if (redisMode === 'cluster') args.push('--redis-cluster');
  const servers = await Promise.all(Array.from({ length: SERVERS }, async () => {
    let server;
    try {
      server = await startServer(args, { env: { CHAT_LOG: 'warn' } });
    } catch (error) {
      if (/room-channels/.test(error.message)) throw new Error(`--room-channels refused: chat-server too old?\n${error.message}`);
      throw error;
    }
    local.push(() => server.stop());
    cleanups.push(() => server.stop());
    return server;
  }));
  const checkAlive = () => {
    const dead = servers.filter((s) => !s.alive());
    for (const s of dead) log(`a chat-server died:\n${s.logs().slice(-2000)}`);
    if (dead.length) throw new Error(`${dead.length} chat-server(s) exited during the bench (${label})`);
  };

  try {
    await Promise.all(servers.map(inbound)); // fail early on an old binary

    // Room i: member 0 on server i % N; member 1 on the same server for the
    // first half of the rooms, on the next server for the second half.
    const rooms = Array.from({ length: ROOMS }, (_, i) => {
      const a = i % SERVERS;
      const b = i < ROOMS / 2 ? a : (i + 1) % SERVERS;
      return { name: `room-${i}`, servers: [a, b], sockets: [] };
    });
    const members = rooms.flatMap((room) => room.servers.map((server) => ({ room, server })));
    await pool(members, 20, async (m) => {
      const socket = await connect(servers[m.server].url, { transports: ['websocket'] });
      local.push(() => socket.close());
      cleanups.push(() => socket.close());
      await join(socket, m.room.name);
      m.room.sockets.push(socket);
    });

    // The second member of each room counts the hold's lines it receives.
    const received = new Set();
    for (const room of rooms) {
      room.sockets[1].on('message', (m) => {
        if (m.clientId?.startsWith('h-')) received.add(m.clientId);
      });
    }

    // Open loop: line k is due at start + k / RATE; a 10 ms timer (10-20 ms
    // on a busy machine) sends whatever is due, without waiting for acks.
    const acks = { ok: 0, errors: 0 };
    async function send(tag, seconds) {
      const total = Math.round(RATE * seconds);
      const start = performance.now();
      let next = 0;
      await new Promise((done) => {
        const timer = setInterval(() => {
          const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE) + 1);
          for (; next < due; next++) {
            const room = rooms[next % rooms.length];
            room.sockets[0].emit('message', { room: room.name, text: `bench ${next}`, clientId: `${tag}-${next}` }, (ack) => {
              if (tag !== 'h') return;
              if (ack?.ok) acks.ok += 1; else acks.errors += 1;
            });
          }
          if (next >= total) { clearInterval(timer); done(); }
        }, 10);
      });
      return total;
    }

    await send('w', WARMUP);
    await sleep(300);
    checkAlive();

    const inBefore = await Promise.all(servers.map(inbound));
    const bytesBefore = await bytesOut(redis);
    const cpuBefore = await cpuSeconds(redis);
    const serversCpuBefore = serverCpuSeconds(servers);
    const t0 = performance.now();
    const sent = await send('h', HOLD);
    const t1 = performance.now();
    const inAfter = await Promise.all(servers.map(inbound));
    const bytesAfter = await bytesOut(redis);
    const cpuAfter = await cpuSeconds(redis);
    const serversCpuAfter = serverCpuSeconds(servers);
    const window = (t1 - t0) / 1000;

    // Drain: every delivery and ack, at most 5 s.
    const drainUntil = performance.now() + 5_000;
    while ((received.size < sent || acks.ok + acks.errors < sent) && performance.now() < drainUntil) await sleep(20);
    checkAlive();

    const perServer = inAfter.map((n, i) => (n - inBefore[i]) / window);
    const perNode = bytesAfter.map((n, i) => n - bytesBefore[i]);
    const bytesTotal = perNode.reduce((a, b) => a + b, 0);
    return {
      label,
      redisMode,
      channels,
      offered: sent / window,
      delivered: received.size / window,
      losses: sent - received.size,
      ackErrors: acks.errors + (sent - acks.ok - acks.errors),
      inMean: perServer.reduce((a, b) => a + b, 0) / perServer.length,
      inMax: Math.max(...perServer),
      bytesPerSec: bytesTotal / window,
      // Redis CPU (all nodes) as a percentage of one core, and per 1,000 lines.
      redisCpu: (100 * cpuAfter.reduce((a, n, i) => a + n - cpuBefore[i], 0)) / window,
      serversCpu: (100 * (serversCpuAfter - serversCpuBefore)) / window,
      shares: redisMode === 'cluster' ? perNode.map((n) => n / bytesTotal) : null,
    };
  } finally {
    // Stop this run's clients, servers and Redis (checkAlive above has
    // reported any server that died).
    while (local.length) {
      try { await local.pop()(); } catch { /* best effort */ }
    }
  }
}

// ---------------------------------------------------------------- output

async function main() {
  const t0 = performance.now();
  log(`chat-server binary: ${serverBin}`);
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  const results = [];
  for (const redisMode of MODES) {
    for (const channels of CHANNELS) results.push(await run(redisMode, channels));
  }

  console.log(`\n== Room channels: ${SERVERS} servers, ${ROOMS} rooms of 2 (half on one server, half on two), ${RATE} msg/s for ${HOLD} s`);
  console.log(table(
    ['run', 'servers', 'rooms', 'offered/s', 'delivered/s', 'losses', 'ack errors', 'inbound/s mean', 'inbound/s max', 'Redis out KB/s', 'Redis CPU %', 'servers CPU %', 'max shard share'],
    results.map((r) => [
      r.label, SERVERS, ROOMS, fmt(r.offered, 0), fmt(r.delivered, 0), r.losses, r.ackErrors,
      fmt(r.inMean, 0), fmt(r.inMax, 0), fmt(r.bytesPerSec / 1024, 1), fmt(r.redisCpu, 1), fmt(r.serversCpu, 1),
      r.shares ? fmt(Math.max(...r.shares), 2) : 'n/a',
    ]),
  ));
  console.log('   inbound/s = chat_redis_messages_received_total delta per second per server (every pub/sub message it got from Redis)');
  console.log('   Redis out = INFO stats total_net_output_bytes delta (summed over the nodes); max shard share = busiest node / sum');
  console.log('   Redis CPU = used_cpu_sys + used_cpu_user delta over the hold, summed over the nodes, in % of one core');
  console.log('   servers CPU = utime + stime of the chat-server processes over the hold, summed, in % of one core');
  console.log('   losses = hold lines the other member of the room did not receive (within 5 s after the hold)');
  for (const r of results) if (r.shares) console.log(`   ${r.label}: node shares of Redis bytes out ${r.shares.map((s) => fmt(s, 2)).join('/')}`);

  console.log('\n== Ratios per-room / shared');
  const ratios = [];
  for (const redisMode of MODES) {
    const shared = results.find((r) => r.redisMode === redisMode && r.channels === 'shared');
    const perRoom = results.find((r) => r.redisMode === redisMode && r.channels === 'per-room');
    const ratio = perRoom.inMean / shared.inMean;
    ratios.push(ratio);
    console.log(`   ${redisMode}: per-server inbound mean ${fmt(ratio, 2)}x, max ${fmt(perRoom.inMax / shared.inMax, 2)}x; Redis bytes out ${fmt(perRoom.bytesPerSec / shared.bytesPerSec, 2)}x, Redis CPU ${fmt(perRoom.redisCpu / shared.redisCpu, 2)}x, servers CPU ${fmt(perRoom.serversCpu / shared.serversCpu, 2)}x`);
  }
  const perRoomCluster = results.find((r) => r.redisMode === 'cluster' && r.channels === 'per-room');
  const share = perRoomCluster ? fmt(Math.max(...perRoomCluster.shares), 2) : 'n/a';

  console.log(`\nload average before the bench: ${load} (other work on this machine skews the numbers)`);
  console.log(`(bench took ${fmt((performance.now() - t0) / 1000, 0)} s)`);
  console.log(`per-server inbound ratio ${fmt(Math.max(...ratios), 2)}, max shard share ${share}`);
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
