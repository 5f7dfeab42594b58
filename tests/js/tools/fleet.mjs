// A fleet of chat clients behind real nginx, steered over stdin/stdout, for
// tests written in other languages (the autoscaler's local end-to-end test).
//
// Start: FLEET_UPSTREAMS="127.0.0.1:3001,127.0.0.1:3002" node fleet.mjs
// It starts nginx (deploy/nginx template, `hash $remote_addr consistent`,
// `max_fails=0` so an upstream that starts late is used at once) in front of
// the upstreams, whether or not they run yet, and prints {"url": ...}.
// Or, behind a load balancer the caller runs: FLEET_URL=http://... and
// FLEET_ACCESS_LOG=its access log (same format as lib/nginx.mjs's), and
// FLEET_COOKIES=1 to keep the affinity cookie it sets.
// Then every stdin line is one JSON command, answered by one JSON line:
//   {"op":"open","count":N}   N more clients join FLEET_ROOM (each from its
//                             own 127.0.x.y address, so the hash spreads them)
//   {"op":"talk"}             client 0 sends a message every 100 ms and asks
//                             the AI every 2 s, until "finish"
//   {"op":"keep","count":K}   close all clients but K, chosen round robin over
//                             the upstreams that served them (client 0 stays)
//   {"op":"moves"}            clients told to move (server-draining) since
//                             the last "moves", once they are back (30 s at
//                             most), and the slowest reconnect
//   {"op":"finish"}           stop talking, wait for running answers, send a
//                             last message and wait until every client holds
//                             every event up to it; report the counts
//   {"op":"stop"}             close everything and exit
// Clients follow the documented recipe (lib/resuming-client.mjs).
import { readFile } from 'node:fs/promises';
import readline from 'node:readline';
import { startNginx, upstreamsByAddress } from '../lib/nginx.mjs';
import { ask } from '../lib/client.mjs';
import { waitFor } from '../lib/wait.mjs';
import { ResumingClient } from '../lib/resuming-client.mjs';

const upstreams = (process.env.FLEET_UPSTREAMS ?? '').split(',').filter(Boolean);
const room = process.env.FLEET_ROOM ?? 'autoscale';
const external = process.env.FLEET_URL;
const nginx = external
  ? { url: external, accessLog: () => readFile(process.env.FLEET_ACCESS_LOG, 'utf8'), stop: async () => {} }
  : await startNginx({
    upstreams: upstreams.map((u) => `${u} max_fails=0`),
    balance: 'hash $remote_addr consistent',
  });
const cookies = process.env.FLEET_COOKIES === '1';
const clients = [];
let opened = 0;
let joinRetries = 0;
let talking = null;
const streams = [];

const reply = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

async function open(count) {
  const fresh = [];
  for (let i = 0; i < count; i++, opened++) {
    fresh.push(new ResumingClient(nginx.url, room, `127.0.${1 + Math.floor(opened / 200)}.${2 + (opened % 200)}`, { cookies }));
  }
  // A first join that fails is tried once more, as the recipe reconnects
  // after a failure (counted: `retried`); a second failure names the client's
  // source address, to find it in the access log.
  let retried = 0;
  await Promise.all(fresh.map((c) => c.open()
    .catch(() => { retried++; return c.open(); })
    .catch((error) => {
      const engine = c.socket?.io?.engine;
      throw new Error(`client ${c.localAddress} (sid ${engine?.id}, ${engine?.transport?.name}, ${engine?.readyState}): ${error.message}; ${JSON.stringify(c.history)}`);
    })));
  clients.push(...fresh);
  joinRetries += retried;
  return { open: clients.length, retried };
}

/** The upstream that last answered each source address, from nginx's access log. */
const upstreamOf = async () => upstreamsByAddress(await nginx.accessLog());

async function keep(count) {
  const served = await upstreamOf();
  const groups = new Map();
  for (const c of clients.slice(1)) {
    const key = served.get(c.localAddress) ?? '?';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(c);
  }
  const kept = [clients[0]];
  const queues = [...groups.values()];
  for (let i = 0; kept.length < count && queues.some((q) => q.length); i++) {
    const q = queues[i % queues.length];
    if (q.length) kept.push(q.shift());
  }
  for (const c of clients) if (!kept.includes(c)) c.close();
  clients.length = 0;
  clients.push(...kept);
  const spread = {};
  for (const c of kept) spread[served.get(c.localAddress) ?? '?'] = (spread[served.get(c.localAddress) ?? '?'] ?? 0) + 1;
  return { open: clients.length, spread };
}

function talk() {
  const talker = clients[0];
  let n = 0;
  talking = setInterval(() => {
    ask(talker.socket, 'message', { room, text: `line ${n}` }).catch(() => {});
    if (n % 20 === 0) {
      streams.push(ask(talker.socket, 'ai-query', { room, prompt: `question ${n}` }).then((a) => a.ok?.streamId).catch(() => null));
    }
    n++;
  }, 100);
  return {};
}

async function moves() {
  // Wait until every client told to move has reconnected (or 30 s).
  await waitFor(() => clients.every((c) => !c.moved || c.moved.reconnectedAt), { timeoutMs: 30_000, everyMs: 50, what: 'moved clients back' })
    .catch(() => {});
  const summary = movedSummary();
  for (const c of clients) c.moved = null;
  return summary;
}

// The clients told to move since the last `moves`: how many, how many are
// still away, and the slowest reconnect (null while one is still away).
function movedSummary() {
  const moved = clients.filter((c) => c.moved);
  const slowest = Math.max(0, ...moved.map((c) => (c.moved.reconnectedAt ?? Infinity) - c.moved.at));
  const pending = moved.filter((c) => !c.moved.reconnectedAt).length;
  return { moved: moved.length, pending, slowestMoveMs: Number.isFinite(slowest) ? Math.round(slowest) : null };
}

async function finish() {
  clearInterval(talking);
  const talker = clients[0];
  // Every answer that was started must end (done: true) for every client.
  const ids = (await Promise.all(streams)).filter(Boolean);
  await waitFor(() => ids.every((id) => [...talker.applied.values()].some((e) => e.streamId === id && e.done)),
    { timeoutMs: 60_000, everyMs: 50, what: 'every answer done' });
  let final = null;
  await waitFor(async () => {
    try { final = (await ask(talker.socket, 'message', { room, text: 'the end' })).ok.roomSeq; return true; } catch { return false; }
  }, { timeoutMs: 30_000, everyMs: 200, what: 'the last message sent' });
  await waitFor(() => clients.every((c) => c.contiguous >= final), { timeoutMs: 30_000, everyMs: 50, what: 'every client up to date' })
    .catch((error) => {
      const behind = clients.filter((c) => c.contiguous < final).map((c) => ({
        client: c.localAddress, contiguous: c.contiguous, highest: Math.max(0, ...c.applied.keys()),
        connected: c.socket?.connected ?? false, sid: c.socket?.io?.engine?.id, history: c.history,
      }));
      throw new Error(`${error.message}: final ${final}, behind ${JSON.stringify(behind)}`);
    });
  let missing = 0;
  for (const c of clients) missing += c.missingUpTo(final);
  const { moved, slowestMoveMs } = movedSummary();
  return {
    final,
    clients: clients.length,
    answers: ids.length,
    missing,
    duplicatesDropped: clients.reduce((n, c) => n + c.duplicates, 0),
    joinRetries,
    moved,
    slowestMoveMs,
  };
}

reply({ url: nginx.url });
for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  try {
    switch (command.op) {
      case 'open': reply(await open(command.count)); break;
      case 'talk': reply(talk()); break;
      case 'keep': reply(await keep(command.count)); break;
      case 'moves': reply(await moves()); break;
      case 'finish': reply(await finish()); break;
      case 'stop':
        for (const c of clients) c.close();
        await nginx.stop();
        reply({});
        process.exit(0);
        break;
      default: reply({ error: `unknown op ${command.op}` });
    }
  } catch (error) {
    reply({ error: String(error?.stack ?? error) });
  }
}
await nginx.stop();
