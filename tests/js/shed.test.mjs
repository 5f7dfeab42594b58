// Shedding (POST /shed, for rebalancing) on the real binary, with real Redis
// and nginx: a stock socket.io-client whose connection is shed reconnects by
// itself, to another server or, alone, to the same one once the shed ends;
// recipe clients lose no event across a shed while an answer streams; new
// sessions get 503 while held ones pass; the shed API's token, body checks,
// 409 while draining, replace, stop, and a drain that ends a shed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, startServers, scrapeMetrics } from './lib/server.mjs';
import { connect, ask } from './lib/client.mjs';
import { startRedis } from './lib/redis.mjs';
import { startNginx, upstreamsByAddress } from './lib/nginx.mjs';
import { waitFor } from './lib/wait.mjs';
import { ResumingClient } from './lib/resuming-client.mjs';

const TOKEN = 'admin-token-for-tests';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const call = (server, path, { method = 'GET', token = TOKEN, body } = {}) => fetch(`${server.adminUrl}${path}`, {
  method,
  headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
  body,
});
const shed = (server, request, token) => call(server, '/shed', { method: 'POST', token, body: typeof request === 'string' ? request : JSON.stringify(request) });
const shedStatus = async (server) => (await call(server, '/shed')).json();
const metric = async (server, name) => (await scrapeMetrics(server.adminUrl)).get(name);

const servers = (count, args, redis) => startServers(count, args, redis, { token: TOKEN, cleanups });

/** A stock socket.io-client (default options; forceNew keeps it off other tests' Managers) and what it sees, in order. */
function stockClient(url) {
  const socket = io(url, { forceNew: true });
  cleanups.push(() => socket.close());
  const seen = [];
  const refusals = [];
  socket.on('connect', () => seen.push('connect'));
  socket.on('server-draining', () => seen.push('server-draining'));
  socket.on('disconnect', (reason) => seen.push(`disconnect: ${reason}`));
  socket.on('connect_error', (error) => refusals.push(error.description));
  return { socket, seen, refusals, connects: () => seen.filter((e) => e === 'connect').length };
}

/** The upstream ("host:port") that last answered each source address, from nginx's access log. */
const servedBy = async (nginx) => upstreamsByAddress(await nginx.accessLog());

/** A raw Engine.IO long-polling session, CONNECTed to namespace `/`: its sid. */
async function pollingSession(server) {
  const base = `${server.url}/socket.io/?EIO=4&transport=polling`;
  const handshake = await fetch(base);
  assert.equal(handshake.status, 200);
  const { sid } = JSON.parse((await handshake.text()).slice(1));
  assert.equal(await (await fetch(`${base}&sid=${sid}`, { method: 'POST', body: '40' })).text(), 'ok');
  // The CONNECT answer (after a ping, if one is due).
  assert.match(await (await fetch(`${base}&sid=${sid}`)).text(), /(^|\x1e)40\{"sid"/);
  return sid;
}

test('a stock socket.io-client whose connection is shed reconnects by itself, to another server', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const pair = await servers(2, ['--drain-jitter-ms', '0'], redis);
  const nginx = await startNginx({ upstreams: pair.map((s) => s.url.replace('http://', '')) });
  cleanups.push(() => nginx.stop());
  const client = stockClient(nginx.url);
  await waitFor(() => client.socket.connected && client.socket.io.engine.transport.name === 'websocket', { what: 'connected over WebSocket' });
  const counts = await Promise.all(pair.map((s) => metric(s, 'chat_connected_sockets')));
  assert.deepEqual(counts.toSorted(), [0, 1], `one server holds it: ${counts}`);
  const from = pair[counts.indexOf(1)];
  const to = pair[1 - counts.indexOf(1)];
  assert.ok((await ask(client.socket, 'join', { room: 'before-the-shed' })).ok);
  assert.equal(await metric(from, 'chat_rooms'), 1);

  const started = await shed(from, { connections: 1, perSecond: 10 });
  assert.equal(started.status, 202);
  await waitFor(() => client.connects() === 2, { what: 'a second connect' })
    .catch((error) => assert.fail(`${error.message}; seen ${client.seen}`));
  assert.deepEqual(client.seen, ['connect', 'server-draining', 'disconnect: transport close', 'connect']);
  assert.equal(await metric(to, 'chat_connected_sockets'), 1, 'it is on the other server now');
  assert.equal(await metric(from, 'chat_connected_sockets'), 0);
  assert.equal(await metric(from, 'chat_rooms'), 0, 'its room was left as on any disconnect');
  assert.ok((await ask(client.socket, 'join', { room: 'after-the-shed' })).ok);
  assert.equal((await fetch(`${from.adminUrl}/readyz`)).status, 503, 'not ready while it sheds');
  await waitFor(async () => (await shedStatus(from)).state === 'idle', { timeoutMs: 40_000, what: 'the shed ends by itself' });
  assert.equal((await fetch(`${from.adminUrl}/readyz`)).status, 200, 'ready again');
  const status = await shedStatus(from);
  assert.deepEqual(status, { state: 'idle', remaining: 0, shedTotal: 1, sockets: 0 });
  assert.equal(await metric(from, 'chat_shed_connections_total'), 1);
  assert.equal(await metric(from, 'chat_shedding'), 0);
});

test('alone, a shed client is refused (503) until the shed ends, then reconnects to the same server', async () => {
  const server = await startServer(['--drain-jitter-ms', '0'], { env: { CHAT_ADMIN_TOKEN: TOKEN } });
  cleanups.push(() => server.stop());
  const client = stockClient(server.url);
  await waitFor(() => client.socket.connected && client.socket.io.engine.transport.name === 'websocket', { what: 'connected over WebSocket' });
  assert.equal((await shed(server, { connections: 5, perSecond: 100 })).status, 202);
  await waitFor(() => client.seen.includes('disconnect: transport close'), { what: 'the transport closed' });
  // Its first reconnection (0.5 to 1.5 s later) comes within the 20 s the shed holds.
  await waitFor(() => client.refusals.length > 0, { what: 'a refused reconnection' });
  assert.equal(client.refusals[0], 503, `refused with HTTP 503: ${client.refusals}`);
  assert.equal((await shedStatus(server)).state, 'shedding');
  assert.equal(await metric(server, 'chat_shedding'), 1);
  assert.equal((await fetch(`${server.adminUrl}/readyz`)).status, 503, 'not ready while shedding');
  await waitFor(() => client.connects() === 2, { timeoutMs: 40_000, what: 'a second connect' })
    .catch((error) => assert.fail(`${error.message}; seen ${client.seen}`));
  assert.equal((await shedStatus(server)).state, 'idle', 'it got in once the shed had ended');
  assert.deepEqual(client.seen, ['connect', 'server-draining', 'disconnect: transport close', 'connect']);
  assert.equal((await shedStatus(server)).shedTotal, 1, 'one socket to shed: the shed took it and ended');
  assert.ok((await ask(client.socket, 'join', { room: 'back-again' })).ok);
});

test('recipe clients lose no room event across a shed while an AI answer streams', { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const pair = await servers(2, ['--demo-answer-tokens', '300', '--demo-tokens-per-sec', '60', '--drain-jitter-ms', '500'], redis);
  const nginx = await startNginx({ upstreams: pair.map((s) => s.url.replace('http://', '')) });
  cleanups.push(() => nginx.stop());
  const room = 'rebalanced';
  const clients = Array.from({ length: 40 }, (_, i) => new ResumingClient(nginx.url, room, `127.0.3.${2 + i}`));
  cleanups.push(() => clients.forEach((c) => c.close()));
  await Promise.all(clients.map((c) => c.open()));
  const counts = await Promise.all(pair.map((s) => metric(s, 'chat_connected_sockets')));
  assert.ok(counts.every((n) => n > 0), `clients on both servers: ${counts}`);
  const busiest = pair[counts[0] >= counts[1] ? 0 : 1];
  const before = Math.max(...counts);
  // The answer streams from the server that sheds; the talker stays on the other one.
  const served = await servedBy(nginx);
  const on = (server) => clients.filter((c) => served.get(c.localAddress) === new URL(server.url).host);
  const asker = on(busiest)[0];
  const talker = on(pair.find((s) => s !== busiest))[0];
  assert.ok(asker && talker, 'the access log names the clients\' servers');
  let talking = true;
  const chatter = (async () => {
    for (let n = 0; talking; n++) {
      await ask(talker.socket, 'message', { room, text: `line ${n}` });
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const question = await ask(asker.socket, 'ai-query', { room, prompt: 'five seconds, please' });
  assert.ok(question.ok, JSON.stringify(question));
  await waitFor(() => clients.every((c) => [...c.applied.values()].some((e) => e.streamId === question.ok.streamId)), { what: 'the answer under way' });

  const toShed = Math.ceil(before / 2);
  const started = await shed(busiest, { connections: toShed, perSecond: 20 });
  assert.equal(started.status, 202);
  await waitFor(async () => (await shedStatus(busiest)).remaining === 0, { what: 'every close done' });
  // The shed counts a close when it sends `server-draining`; the client may
  // read it a moment after the status says every close is done.
  await waitFor(() => clients.filter((c) => c.moved).length >= toShed, { timeoutMs: 5_000, what: 'every shed client told to move' })
    .catch(() => {});
  const moved = clients.filter((c) => c.moved);
  assert.equal(moved.length, toShed, 'as many clients told to move as asked');
  await waitFor(() => moved.every((c) => c.moved.reconnectedAt), { timeoutMs: 30_000, what: 'moved clients back' });
  assert.equal((await shedStatus(busiest)).shedTotal, toShed);
  assert.equal(await metric(busiest, 'chat_shed_connections_total'), toShed);
  assert.equal(await metric(busiest, 'chat_connected_sockets'), before - toShed, 'the moved clients went to the other server');

  await waitFor(() => clients.every((c) => [...c.applied.values()].some((e) => e.streamId === question.ok.streamId && e.done)),
    { timeoutMs: 30_000, what: 'the answer done for every client' });
  talking = false;
  await chatter;
  const final = (await ask(talker.socket, 'message', { room, text: 'the end' })).ok.roomSeq;
  await waitFor(() => clients.every((c) => c.contiguous >= final), { timeoutMs: 30_000, what: 'everyone caught up' });

  await waitFor(async () => (await shedStatus(busiest)).state === 'idle', { timeoutMs: 40_000, what: 'the shed over' });

  let missing = 0;
  let duplicates = 0;
  for (const c of clients) {
    missing += c.missingUpTo(final);
    duplicates += c.duplicates;
    const answer = [...c.applied.values()].filter((e) => e.streamId === question.ok.streamId).sort((a, b) => a.seq - b.seq);
    assert.deepEqual(answer.map((e) => e.seq), answer.map((_, i) => i + 1), 'the answer\'s chunks, each once');
    assert.equal(answer.map((e) => e.chunk).join('').split(' ').length, 300, 'the whole answer');
    assert.equal(answer.at(-1).error, undefined);
  }
  const slowest = Math.max(...moved.map((c) => c.moved.reconnectedAt - c.moved.at));
  console.log(`# shed: ${clients.length} clients, ${before} on the busiest server, ${toShed} shed; events up to roomSeq ${final}; ` +
    `${missing} missing, ${duplicates} duplicates dropped by the client rule; slowest move ${slowest.toFixed(0)} ms`);
  assert.equal(missing, 0);
  assert.deepEqual([...new Set(moved.flatMap((c) => c.disconnects))], ['transport close']);
  assert.ok(clients.filter((c) => !c.moved).every((c) => c.disconnects.length === 0), 'the others stayed');
});

test('while shedding, new sessions get 503 and held ones pass; after it, new sessions are welcome', async () => {
  // The 20 s hold after the shed's one close keeps it shedding until DELETE.
  const server = await startServer([], { env: { CHAT_ADMIN_TOKEN: TOKEN } });
  cleanups.push(() => server.stop());
  const sids = [await pollingSession(server), await pollingSession(server), await pollingSession(server)];
  assert.equal((await shed(server, { connections: 1, perSecond: 1 })).status, 202);
  await waitFor(async () => (await shedStatus(server)).shedTotal === 1, { what: 'one session shed' });
  assert.equal((await shedStatus(server)).state, 'shedding');

  const handshake = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(handshake.status, 503, 'a new session is refused');
  assert.equal(handshake.headers.get('retry-after'), '1');
  assert.match(await handshake.text(), /shedding/);
  await assert.rejects(connect(server.url, { transports: ['websocket'] }), 'a new WebSocket session too');
  await waitFor(async () => (await shedStatus(server)).sockets === 2, { what: 'the shed session gone' });
  const pong = async (sid) => (await fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '3' })).status;
  assert.deepEqual((await Promise.all(sids.map(pong))).toSorted(), [200, 200, 503], 'the two held sessions pass, the shed one is gone');
  assert.equal((await fetch(`${server.adminUrl}/readyz`)).status, 503, 'not ready while shedding');

  const stopped = await call(server, '/shed', { method: 'DELETE' });
  assert.equal(stopped.status, 200);
  assert.equal((await stopped.json()).state, 'idle');
  assert.equal((await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`)).status, 200, 'welcome again');
  assert.equal((await fetch(`${server.adminUrl}/readyz`)).status, 200, 'and ready');
  const fresh = await connect(server.url, { transports: ['websocket'] });
  cleanups.push(() => fresh.close());
  assert.ok((await ask(fresh, 'join', { room: 'after' })).ok);
  assert.equal(await metric(server, 'chat_shedding'), 0);
});

test('the shed API: the admin token, bad bodies change nothing, a refusal only, 409 while draining, replace, stop, a drain ends it', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [s] = await servers(1, [], redis);
  const a = await connect(s.url);
  const b = await connect(s.url);
  cleanups.push(() => { a.close(); b.close(); });
  const untouched = async (what) => {
    assert.deepEqual(await shedStatus(s), { state: 'idle', remaining: 0, shedTotal: 0, sockets: 2 }, what);
    assert.ok(a.connected && b.connected, what);
    assert.equal(await metric(s, 'chat_shedding'), 0, what);
    assert.equal((await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)).status, 200, what);
  };

  for (const method of ['GET', 'POST', 'DELETE']) {
    for (const token of [null, 'wrong']) {
      const refused = await call(s, '/shed', { method, token, body: method === 'POST' ? '{"connections":1,"perSecond":1}' : undefined });
      assert.equal(refused.status, 401, `${method} with token ${token}`);
    }
  }
  await untouched('after refused tokens');
  const open = await startServer([]);
  cleanups.push(() => open.stop());
  const off = await fetch(`${open.adminUrl}/shed`, { method: 'POST', headers: { authorization: 'Bearer anything' }, body: '{"connections":1,"perSecond":1}' });
  assert.equal(off.status, 403);
  assert.match(await off.text(), /no admin token configured/);

  for (const [body, why] of [
    ['{}', /missing field `connections`/],
    ['{"connections":"x","perSecond":10}', /invalid type: string "x"/],
    ['{"connections":-1,"perSecond":10}', /invalid value/],
    ['{"connections":1,"perSecond":10,"force":true}', /unknown field `force`/],
    ['{"connections":1}', /missing field `perSecond`/],
    ['{"connections":1,"perSecond":10001}', /perSecond must be 1\.\.10000/],
    ['{"connections":1,"perSecond":0}', /perSecond must be 1\.\.10000/],
    ['connections=1&perSecond=10', /expected value/],
    ['', /EOF/],
  ]) {
    const refused = await shed(s, body);
    assert.equal(refused.status, 400, body);
    assert.match(await refused.text(), why, body);
    await untouched(`after ${body}`);
  }

  // 0 connections: a refusal only, nobody is moved.
  const refusal = await shed(s, { connections: 0, perSecond: 1 });
  assert.equal(refusal.status, 202);
  assert.deepEqual(await refusal.json(), { state: 'shedding', remaining: 0, shedTotal: 0, sockets: 2 });
  assert.equal((await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)).status, 503, 'refused');
  assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 503);
  assert.ok(a.connected && b.connected, 'nobody moved');
  assert.equal((await call(s, '/shed', { method: 'DELETE' })).status, 200);
  await untouched('after a refusal, stopped');

  // A new request replaces the shed in progress: its count is the new one.
  const first = await shed(s, { connections: 1000, perSecond: 1 });
  assert.equal(first.status, 202);
  assert.equal((await first.json()).state, 'shedding');
  await waitFor(async () => (await shedStatus(s)).shedTotal === 1, { what: 'the first close, at once' });
  const second = await shed(s, { connections: 1, perSecond: 1 });
  assert.equal(second.status, 202);
  const replaced = await second.json();
  assert.equal(replaced.state, 'shedding');
  assert.ok(replaced.remaining <= 1, `the new count: ${JSON.stringify(replaced)}`);
  await waitFor(async () => (await shedStatus(s)).sockets === 0, { what: 'the second socket shed' });
  assert.deepEqual(await shedStatus(s), { state: 'shedding', remaining: 0, shedTotal: 2, sockets: 0 }, 'held after its last close');
  assert.match(s.logs(), /shedding, in place of the shed in progress connections=1 per_second=1 replaced_shed=1 replaced_asked=1000/);
  assert.equal(await metric(s, 'chat_shedding'), 1);
  assert.equal(await metric(s, 'chat_shed_connections_total'), 2);
  assert.equal((await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)).status, 503);

  const stopped = await call(s, '/shed', { method: 'DELETE' });
  assert.equal(stopped.status, 200);
  assert.deepEqual(await stopped.json(), { state: 'idle', remaining: 0, shedTotal: 2, sockets: 0 });
  assert.match(s.logs(), /shed ended shed=1 asked=1 why="stopped \(DELETE \/shed\)"/);
  assert.equal((await call(s, '/shed', { method: 'DELETE' })).status, 200, 'stopping no shed is fine');
  assert.equal((await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)).status, 200, 'welcome again');

  // A drain ends a shed at once, and refuses the next one.
  assert.equal((await shed(s, { connections: 5, perSecond: 1 })).status, 202);
  assert.equal((await call(s, '/drain', { method: 'POST' })).status, 202);
  assert.equal((await shedStatus(s)).state, 'idle');
  assert.equal(await metric(s, 'chat_shedding'), 0);
  await waitFor(() => /shed ended shed=0 asked=5 why="the server drains"/.test(s.logs()), { what: 'the end logged' });
  const conflict = await shed(s, { connections: 1, perSecond: 1 });
  assert.equal(conflict.status, 409);
  assert.match(await conflict.text(), /drains/);
  assert.equal((await shedStatus(s)).state, 'idle', 'nothing changed');
  assert.equal((await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)).status, 503, 'the drain refuses new sessions itself');
});
