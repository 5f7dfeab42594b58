// Graceful drain through real nginx and Redis: clients of a draining server
// move to the others and resume without losing or repeating an event, even
// mid-answer; a stock socket.io-client reconnects by itself; cancel, drain
// timeout, crashes and the admin token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, startServers, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';
import { startRedis } from './lib/redis.mjs';
import { startNginx } from './lib/nginx.mjs';
import { waitFor } from './lib/wait.mjs';
import { ResumingClient } from './lib/resuming-client.mjs';

const TOKEN = 'admin-token-for-tests';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const admin = (server, method = 'GET', token = TOKEN) =>
  fetch(`${server.adminUrl}/drain`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });

const servers = (count, args, redis) => startServers(count, args, redis, { token: TOKEN, cleanups });

test('300 clients over 30 rooms: draining a server mid-answer loses and repeats nothing', { timeout: 180_000 }, async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [drained, ...others] = await servers(3, [
    '--demo-answer-tokens', '500', '--demo-tokens-per-sec', '50', '--drain-jitter-ms', '1000',
  ], redis);
  const all = [drained, ...others];
  const nginx = await startNginx({ upstreams: all.map((s) => s.url.replace('http://', '')), balance: 'hash $remote_addr consistent' });
  cleanups.push(() => nginx.stop());

  const rooms = Array.from({ length: 30 }, (_, i) => `room-${i}`);
  const clients = [];
  for (let i = 0; i < 300; i++) {
    const address = `127.0.${1 + Math.floor(i / 200)}.${2 + (i % 200)}`;
    clients.push(new ResumingClient(nginx.url, rooms[i % 30], address));
  }
  cleanups.push(() => clients.forEach((c) => c.close()));
  for (let i = 0; i < clients.length; i += 50) await Promise.all(clients.slice(i, i + 50).map((c) => c.open()));
  const perServer = await Promise.all(all.map(async (s) => (await scrapeMetrics(s.adminUrl)).get('chat_connected_sockets')));
  assert.ok(perServer.every((n) => n > 0), `clients on every server: ${perServer}`);

  // Continuous chat: one talker per room, three lines a second each.
  const talkers = rooms.map((room) => clients.find((c) => c.room === room));
  let talking = true;
  const talk = async (client) => {
    for (let n = 0; talking; n++) {
      try { await ask(client.socket, 'message', { room: client.room, text: `line ${n}` }); } catch { /* moving */ }
      await new Promise((r) => setTimeout(r, 330));
    }
  };
  const chatter = talkers.map(talk);
  // A 10-second answer in every room, asked from every server.
  const askers = rooms.map((room) => clients.filter((c) => c.room === room)[1]);
  const streams = await Promise.all(askers.map(async (c) => (await ask(c.socket, 'ai-query', { room: c.room, prompt: 'take ten seconds' })).ok.streamId));

  // Mid-answer: drain.
  await waitFor(() => clients[0].applied.size > 20, { what: 'answers under way' });
  const before = await scrapeMetrics(drained.adminUrl);
  const onDrained = before.get('chat_connected_sockets');
  const active = before.get('chat_ai_streams_active');
  assert.equal((await admin(drained, 'POST')).status, 202);
  assert.equal((await fetch(`${drained.adminUrl}/readyz`)).status, 503);
  assert.equal((await scrapeMetrics(drained.adminUrl)).get('chat_draining'), 1);
  await waitFor(async () => (await (await admin(drained)).json()).state === 'drained', { timeoutMs: 60_000, everyMs: 200, what: 'drained' });
  const status = await (await admin(drained)).json();
  assert.equal(status.sockets, 0);
  assert.equal(status.activeStreams, 0);
  assert.equal((await scrapeMetrics(drained.adminUrl)).get('chat_drain_remaining_sockets'), 0);

  talking = false;
  await Promise.all(chatter);
  // Every answer completes for every member, wherever they are now.
  const streamOf = new Map(rooms.map((room, i) => [room, streams[i]]));
  await waitFor(() => clients.every((c) => [...c.applied.values()].some((e) => e.streamId === streamOf.get(c.room) && e.done)),
    { timeoutMs: 60_000, everyMs: 200, what: 'every answer done for every client' });
  // A last line per room marks the end of the run.
  const finals = new Map();
  for (const talker of talkers) finals.set(talker.room, (await ask(talker.socket, 'message', { room: talker.room, text: 'the end' })).ok.roomSeq);
  await waitFor(() => clients.every((c) => c.contiguous >= finals.get(c.room)), { timeoutMs: 30_000, everyMs: 200, what: 'everyone caught up' });

  let checked = 0;
  let missing = 0;
  let duplicates = 0;
  for (const c of clients) {
    const final = finals.get(c.room);
    checked += final - (c.joinedAt ?? 0);
    missing += c.missingUpTo(final);
    duplicates += c.duplicates;
    const answer = [...c.applied.values()].filter((e) => e.streamId === streamOf.get(c.room)).sort((a, b) => a.seq - b.seq);
    assert.deepEqual(answer.map((e) => e.seq), answer.map((_, i) => i + 1));
    assert.equal(answer.map((e) => e.chunk).join('').split(' ').length, 500, 'the whole answer');
    assert.equal(answer.at(-1).error, undefined);
  }
  const moved = clients.filter((c) => c.moved);
  const reconnects = moved.map((c) => c.moved.reconnectedAt - c.moved.at);
  const slowest = Math.max(...reconnects);
  console.log(`# drain: ${clients.length} clients, ${onDrained} on the drained server with ${active} answers running; ` +
    `${checked} events checked, ${missing} missing, ${duplicates} duplicates dropped by the client rule; ` +
    `${moved.length} moved, slowest reconnect ${slowest.toFixed(0)} ms`);
  assert.equal(missing, 0);
  assert.equal(moved.length, onDrained, 'every client of the drained server was told to move');
  assert.ok(moved.every((c) => c.moved.reconnectedAt), 'and reconnected');
  // Its transport was closed (no Socket.IO DISCONNECT): socket.io-client reconnected by itself.
  const reasons = new Set(moved.flatMap((c) => c.disconnects));
  assert.deepEqual([...reasons], ['transport close'], 'how the moved clients were disconnected');
  assert.ok(clients.filter((c) => !c.moved).every((c) => c.disconnects.length === 0), 'the others stayed');
  assert.ok(slowest < 10_000, `slowest reconnect ${slowest} ms`);

  const { code } = await drained.stop();
  assert.equal(code, 0, 'SIGTERM on a drained server exits 0');
});

test('a stock socket.io-client whose server drains reconnects by itself, to another server', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const pair = await servers(2, ['--drain-jitter-ms', '0'], redis);
  const nginx = await startNginx({ upstreams: pair.map((s) => s.url.replace('http://', '')) });
  cleanups.push(() => nginx.stop());
  // Default options (forceNew only keeps it off other tests' Managers), no recipe code.
  const socket = io(nginx.url, { forceNew: true });
  cleanups.push(() => socket.close());
  const seen = [];
  socket.on('connect', () => seen.push('connect'));
  socket.on('server-draining', () => seen.push('server-draining'));
  socket.on('disconnect', (reason) => seen.push(`disconnect: ${reason}`));
  socket.on('connect_error', (error) => seen.push(`connect_error: ${error.message}`));
  await waitFor(() => socket.connected && socket.io.engine.transport.name === 'websocket', { what: 'connected over WebSocket' });
  const on = async (s) => (await scrapeMetrics(s.adminUrl)).get('chat_connected_sockets');
  const counts = await Promise.all(pair.map(on));
  const from = pair[counts.indexOf(1)];
  const to = pair[1 - counts.indexOf(1)];
  assert.deepEqual(counts.toSorted(), [0, 1], `one server holds it: ${counts}`);
  assert.ok((await ask(socket, 'join', { room: 'before-the-move' })).ok);
  assert.equal((await scrapeMetrics(from.adminUrl)).get('chat_rooms'), 1);

  assert.equal((await admin(from, 'POST')).status, 202);
  await waitFor(() => seen.filter((e) => e === 'connect').length === 2, { what: 'a second connect' })
    .catch((error) => assert.fail(`${error.message}; seen ${seen}`));
  assert.deepEqual(seen, ['connect', 'server-draining', 'disconnect: transport close', 'connect']);
  assert.equal(await on(to), 1, 'it is on the other server now');
  assert.equal((await scrapeMetrics(from.adminUrl)).get('chat_rooms'), 0, 'its room was left as on any disconnect');
  await waitFor(async () => (await (await admin(from)).json()).state === 'drained', { what: 'drained' });
  assert.ok((await ask(socket, 'join', { room: 'after-the-move' })).ok);
});

test('the drain API refuses a missing or wrong token, and is off without one', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [s] = await servers(1, [], redis);
  assert.equal((await admin(s, 'POST', null)).status, 401);
  assert.equal((await admin(s, 'POST', 'wrong')).status, 401);
  assert.equal((await admin(s, 'GET', 'wrong')).status, 401);
  assert.equal((await admin(s, 'DELETE', null)).status, 401);
  assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 200, 'a refused request changed nothing');
  assert.equal((await (await admin(s)).json()).state, 'serving');

  const open = await startServer([]);
  cleanups.push(() => open.stop());
  const refused = await fetch(`${open.adminUrl}/drain`, { method: 'POST', headers: { authorization: 'Bearer anything' } });
  assert.equal(refused.status, 403);
  assert.match(await refused.text(), /no admin token configured/);
});

test('a cancelled drain serves again', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [s] = await servers(1, ['--drain-rate', '1'], redis);
  const stays = await connect(s.url);
  const stays2 = await connect(s.url);
  cleanups.push(() => { stays.close(); stays2.close(); });
  assert.equal((await admin(s, 'POST')).status, 202);
  assert.equal((await admin(s, 'POST')).status, 202, 'idempotent');
  assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 503);
  const handshake = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(handshake.status, 503, 'new sessions are refused');
  await assert.rejects(connect(s.url, { transports: ['websocket'] }), 'new WebSocket sessions too');
  assert.equal((await admin(s, 'DELETE')).status, 200);
  assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 200);
  assert.equal((await scrapeMetrics(s.adminUrl)).get('chat_draining'), 0);
  const fresh = await connect(s.url);
  cleanups.push(() => fresh.close());
  assert.ok((await ask(fresh, 'join', { room: 'back' })).ok);
  assert.equal((await (await admin(s)).json()).state, 'serving');
  assert.ok(stays.connected || stays2.connected, 'at 1 per second, the cancel came before everyone was moved');
});

async function answerInterrupted(killServer) {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [victim, ...survivors] = await servers(3, ['--demo-answer-tokens', '800', '--demo-tokens-per-sec', '100', '--drain-timeout', '2s'], redis);
  const asker = await connect(victim.url);
  const watchers = await Promise.all(survivors.map((s) => connect(s.url)));
  cleanups.push(() => [asker, ...watchers].forEach((s) => s.close()));
  const recorders = watchers.map(record);
  for (const s of [asker, ...watchers]) await ask(s, 'join', { room: 'fragile' });
  await ask(watchers[0], 'message', { room: 'fragile', text: 'before' });
  const q = await ask(asker, 'ai-query', { room: 'fragile', prompt: 'an eight-second answer' });
  await waitFor(() => recorders[0].stream(q.ok.streamId).length > 5, { what: 'the answer under way' });
  const { code, signal, at } = await killServer(victim);
  await Promise.all(recorders.map((r) => r.done(q.ok.streamId, 15_000)));
  const closedAfter = performance.now() - at;
  for (const r of recorders) {
    const chunks = r.stream(q.ok.streamId);
    assert.deepEqual(chunks.map((c) => c.seq), chunks.map((_, i) => i + 1), 'seq contiguous up to the close');
    assert.equal(chunks.filter((c) => c.done).length, 1, 'closed exactly once');
    assert.equal(chunks.at(-1).error, 'interrupted');
    const roomSeqs = [...r.messages, ...chunks].map((e) => e.roomSeq).sort((a, b) => a - b);
    assert.deepEqual(roomSeqs, roomSeqs.map((_, i) => i + 1), 'everything else intact');
  }
  await ask(watchers[0], 'message', { room: 'fragile', text: 'after' });
  const interrupted = await Promise.all(survivors.map(async (s) => (await scrapeMetrics(s.adminUrl)).get('chat_ai_streams_total{outcome="interrupted"}') ?? 0));
  assert.equal(interrupted.reduce((a, b) => a + b, 0), 1, `one server closed it: ${interrupted}`);
  return { code, signal, closedAfter };
}

test('drain timeout shorter than an answer: the server exits and the answer ends "interrupted"', async () => {
  let exitedAfter;
  const { code, closedAfter } = await answerInterrupted(async (victim) => {
    const at = performance.now();
    const exit = await victim.stop(); // SIGTERM: drain, but the answer outlives --drain-timeout 2s
    exitedAfter = performance.now() - at;
    return { ...exit, at };
  });
  assert.equal(code, 0);
  assert.ok(exitedAfter >= 2_000 && exitedAfter < 5_000, `exited ${exitedAfter.toFixed(0)} ms after SIGTERM, at the 2 s timeout`);
  console.log(`# drain timeout: exit ${exitedAfter.toFixed(0)} ms after SIGTERM; answer closed as interrupted ${closedAfter.toFixed(0)} ms after SIGTERM`);
});

test('SIGKILL mid-answer: the orphan is closed "interrupted" within seconds, once', async () => {
  const { signal, closedAfter } = await answerInterrupted(async (victim) => {
    const at = performance.now();
    return { ...(await victim.kill('SIGKILL')), at };
  });
  assert.equal(signal, 'SIGKILL');
  console.log(`# SIGKILL: answer closed as interrupted ${closedAfter.toFixed(0)} ms after the kill`);
  assert.ok(closedAfter < 8_000);
});
