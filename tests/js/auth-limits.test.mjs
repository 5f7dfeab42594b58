// Abuse limits: event budgets per socket and per user answered `rate_limited`
// with retryAfterMs (and nothing else happens), floods disconnected,
// connections per address, concurrent AI answers per user and per room, rooms
// per socket; and a flooding client does not slow a well-behaved one down.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';
import { signJwt, nowSec } from './lib/jwt.mjs';
import { waitFor } from './lib/wait.mjs';

const servers = [];
async function start(args, options) {
  const server = await startServer(args, options);
  servers.push(server);
  return server;
}
after(async () => {
  for (const server of servers) {
    assert.ok(server.alive(), 'every server survived');
    await server.stop();
  }
});

const sockets = [];
async function client(url, options) {
  const socket = await connect(url, options);
  sockets.push(socket);
  return socket;
}
after(() => { for (const s of sockets) s.close(); });

test('events past the budget get rate_limited with retryAfterMs, and nothing else happens', async () => {
  const server = await start(['--events-per-sec', '2', '--events-burst', '3', '--flood-disconnect-after', '1000']);
  const talker = await client(server.url);
  const watcher = await client(server.url);
  const heard = record(watcher);
  assert.ok((await ask(watcher, 'join', { room: 'budget' })).ok);
  assert.ok((await ask(talker, 'join', { room: 'budget' })).ok); // 1 of 3
  const acks = await Promise.all(Array.from({ length: 5 }, (_, i) => ask(talker, 'message', { room: 'budget', text: `m${i}` })));
  const accepted = acks.filter((a) => a.ok);
  const limited = acks.filter((a) => a.error?.code === 'rate_limited');
  assert.equal(accepted.length, 2, JSON.stringify(acks));
  assert.equal(limited.length, 3, JSON.stringify(acks));
  for (const ack of limited) {
    assert.ok(Number.isInteger(ack.error.retryAfterMs) && ack.error.retryAfterMs > 0 && ack.error.retryAfterMs <= 500, JSON.stringify(ack));
    assert.match(ack.error.message, /retry after/);
  }
  await waitFor(() => heard.messages.length >= 2, { what: 'the accepted messages' });
  // After the advised wait the socket may send again.
  await new Promise((r) => setTimeout(r, Math.max(...limited.map((a) => a.error.retryAfterMs))));
  const later = await ask(talker, 'message', { room: 'budget', text: 'later' });
  assert.ok(later.ok, JSON.stringify(later));
  await waitFor(() => heard.messages.some((m) => m.text === 'later'), { what: 'the later message' });
  // Only the accepted ones were published, with contiguous roomSeq.
  assert.deepEqual(heard.messages.map((m) => m.roomSeq), [1, 2, 3]);
  assert.deepEqual(heard.messages.map((m) => m.text), [...accepted.map((_, i) => heard.messages[i].text).slice(0, 2), 'later']);
});

test('a socket that keeps flooding is told why and disconnected', async () => {
  const server = await start(['--events-per-sec', '5', '--events-burst', '5', '--flood-disconnect-after', '20']);
  // Over WebSocket the client sees the reason; a long-polling flooder is cut
  // off too, its next poll failing.
  const flooder = await client(server.url, { transports: ['websocket'] });
  const bystander = await client(server.url);
  const errors = [];
  flooder.on('error', (e) => errors.push(e));
  const gone = new Promise((resolve) => flooder.once('disconnect', resolve));
  for (let i = 0; i < 500; i++) flooder.emit('message', { room: 'x', text: `${i}` }, () => {});
  // The server sends `error`, then DISCONNECT, then closes the transport;
  // the close can overtake the last packets, so the client sees one of two reasons.
  const reason = await gone;
  assert.ok(['io server disconnect', 'transport close'].includes(reason), reason);
  assert.ok(errors.length <= 1, JSON.stringify(errors));
  if (reason === 'io server disconnect') {
    assert.equal(errors[0]?.code, 'rate_limited');
    assert.match(errors[0].message, /disconnected/);
  }
  // Others are unaffected.
  assert.ok((await ask(bystander, 'join', { room: 'x' })).ok);
});

test('new connections per address are limited at the handshake', async () => {
  const server = await start(['--connections-per-minute-per-ip', '3']);
  for (let i = 0; i < 3; i++) await client(server.url);
  const error = await connect(server.url).then((s) => { s.close(); return null; }, (e) => e);
  assert.ok(error, 'the fourth connection within a minute was refused');
  assert.match(error.message, /^rate_limited: too many connections from this address; retry after \d+ ms$/);
});

test('behind a trusted proxy, X-Forwarded-For names the address; from anyone else it is ignored', async () => {
  const from = (ip) => ({ extraHeaders: { 'X-Forwarded-For': ip } });
  const refused = (server, options) => connect(server.url, options).then((s) => { s.close(); return null; }, (e) => e.message);
  // The test client is the "proxy" here: loopback is trusted.
  const behind = await start(['--connections-per-minute-per-ip', '2', '--trusted-proxies', '127.0.0.0/8']);
  for (let i = 0; i < 2; i++) await client(behind.url, from('203.0.113.7'));
  assert.match(await refused(behind, from('203.0.113.7')), /^rate_limited: too many connections from this address/);
  assert.ok(await client(behind.url, from('203.0.113.8')), 'another client behind the same proxy has its own budget');
  // A spoofed entry to the left of what the proxy appended is not believed.
  assert.match(await refused(behind, from('198.51.100.1, 203.0.113.7')), /^rate_limited/);

  // Without --trusted-proxies the header changes nothing: every connection here is 127.0.0.1.
  const direct = await start(['--connections-per-minute-per-ip', '2']);
  await client(direct.url, from('203.0.113.1'));
  await client(direct.url, from('203.0.113.2'));
  assert.match(await refused(direct, from('203.0.113.3')), /^rate_limited/);
});

test('concurrent AI answers are limited per user and per room', async () => {
  const server = await start([
    '--max-ai-answers-per-user', '1', '--max-ai-answers-per-room', '2',
    '--demo-answer-tokens', '40', '--demo-tokens-per-sec', '40',
  ]);
  const [a, b, c] = [await client(server.url), await client(server.url), await client(server.url)];
  const heard = record(a);
  for (const s of [a, b, c]) assert.ok((await ask(s, 'join', { room: 'ai' })).ok);
  const first = await ask(a, 'ai-query', { room: 'ai', prompt: 'one' });
  assert.ok(first.ok, JSON.stringify(first));
  const again = await ask(a, 'ai-query', { room: 'ai', prompt: 'two at once' });
  assert.equal(again.error?.code, 'rate_limited');
  assert.match(again.error.message, /per user/);
  assert.ok(again.error.retryAfterMs > 0);
  assert.ok((await ask(b, 'ai-query', { room: 'ai', prompt: 'b' })).ok);
  const third = await ask(c, 'ai-query', { room: 'ai', prompt: 'c' });
  assert.equal(third.error?.code, 'rate_limited');
  assert.match(third.error.message, /per room/);
  // Refused prompts were not published: only the two accepted ones were.
  await heard.done(first.ok.streamId);
  assert.deepEqual(heard.messages.filter((m) => m.kind === 'ai-prompt').map((m) => m.text), ['one', 'b']);
  // Once its answer ended, the user may ask again.
  assert.ok((await ask(a, 'ai-query', { room: 'ai', prompt: 'now' })).ok);
});

test('rooms per socket are configurable', async () => {
  const server = await start(['--max-rooms-per-socket', '2']);
  const s = await client(server.url);
  assert.ok((await ask(s, 'join', { room: 'r1' })).ok);
  assert.ok((await ask(s, 'join', { room: 'r2' })).ok);
  const third = await ask(s, 'join', { room: 'r3' });
  assert.equal(third.error?.code, 'too_many_rooms');
  assert.match(third.error.message, /at most 2 rooms/);
});

test('an authenticated user has one budget over all their sockets', async () => {
  const secret = randomBytes(32).toString('hex');
  const server = await start(['--user-events-per-sec', '2', '--events-per-sec', '100'], { env: { CHAT_JWT_SECRET: secret } });
  const token = (sub) => signJwt({ sub, exp: nowSec() + 300, rooms: ['*'] }, { key: secret });
  const [one, two] = [await client(server.url, { auth: { token: token('ann') } }), await client(server.url, { auth: { token: token('ann') } })];
  const other = await client(server.url, { auth: { token: token('bob') } });
  const acks = await Promise.all([one, two, one, two, one, two].map((s) => ask(s, 'join', { room: 'u' })));
  assert.equal(acks.filter((a) => a.ok).length, 4, JSON.stringify(acks)); // burst: 2 x 2 per second
  assert.equal(acks.filter((a) => a.error?.code === 'rate_limited').length, 2);
  assert.match(acks.find((a) => a.error).error.message, /this user/);
  assert.ok((await ask(other, 'join', { room: 'u' })).ok, 'another user is not affected');
});

const p99 = (samples) => {
  const sorted = [...samples].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];
};

/**
 * Round-trip times (ms) of `count` messages sent one after the other, paced
 * at about 100 a second.
 */
async function roundTrips(socket, room, count) {
  const samples = [];
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, 8));
    const start = performance.now();
    const ack = await ask(socket, 'message', { room, text: `calm ${i}` });
    samples.push(performance.now() - start);
    assert.ok(ack.ok, JSON.stringify(ack));
  }
  return samples;
}

test('a flooding client is limited and disconnected; a well-behaved client keeps its p99 within 2x', async (t) => {
  const server = await start([
    // Budgets a chat client never notices (it sends ~100 events/s here).
    '--events-per-sec', '150', '--events-burst', '50', '--flood-disconnect-after', '50',
    '--connections-per-minute-per-ip', '3',
  ]);
  const calm = await client(server.url, { transports: ['websocket'] });
  assert.ok((await ask(calm, 'join', { room: 'calm' })).ok);
  await roundTrips(calm, 'calm', 50); // warm up

  // The flooder uses its own room, so the calm client's own work does not
  // grow with what the flooder was allowed to send: only the server is shared.
  // It floods at 5000 events/s (33x its rate) and reconnects at once when cut off.
  const flood = async (rounds) => {
    const script = fileURLToPath(new URL('./lib/flooder.mjs', import.meta.url));
    const config = JSON.stringify({ url: server.url, room: 'flood', rate: 5000 });
    const flooder = spawn('nice', ['-n', '15', process.execPath, script, config], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let stats = {};
    flooder.on('message', (m) => { stats = m.stats; });
    const finished = new Promise((resolve, reject) => { flooder.on('exit', resolve); flooder.on('error', reject); });
    try {
      await waitFor(() => stats.sent > 0 || stats.refusedHandshakes > 0, { what: 'the flooder started' });
      return { samples: await rounds(), stats: () => stats };
    } finally {
      if (flooder.connected) flooder.send('stop');
      await finished;
    }
  };
  // Alone and beside the flooder in turns, so that load from elsewhere on
  // the machine falls on both alike; up to three tries on a shared machine.
  const ROUNDS = 6;
  const PER_ROUND = 100;
  let outcome;
  const totals = {};
  for (let attempt = 1; attempt <= 3; attempt++) {
    const alone = [];
    const beside = [];
    for (let round = 0; round < ROUNDS; round++) {
      alone.push(...await roundTrips(calm, 'calm', PER_ROUND));
      const { samples, stats } = await flood(() => roundTrips(calm, 'calm', PER_ROUND));
      beside.push(...samples);
      for (const [key, value] of Object.entries(stats())) totals[key] = (totals[key] ?? 0) + value;
    }
    outcome = { alone: p99(alone), beside: p99(beside) };
    t.diagnostic(`attempt ${attempt}: well-behaved p99 ${outcome.alone.toFixed(2)} ms alone, ${outcome.beside.toFixed(2)} ms beside the flooder (ratio ${(outcome.beside / outcome.alone).toFixed(2)}); flooder so far: ${JSON.stringify(totals)}`);
    if (outcome.beside <= 2 * outcome.alone) break;
  }
  assert.ok(outcome.beside <= 2 * outcome.alone, `p99 ${outcome.beside.toFixed(2)} ms beside the flooder vs ${outcome.alone.toFixed(2)} ms alone`);
  const m = await scrapeMetrics(server.adminUrl);
  const refused = (event, code) => m.get(`chat_events_rejected_total{code="${code}",event="${event}"}`) ?? 0;
  t.diagnostic(`server: ${refused('message', 'rate_limited')} messages answered rate_limited, ${refused('connect', 'rate_limited')} handshakes refused`);
  assert.ok(refused('message', 'rate_limited') > 0, 'the flooder was answered rate_limited');
  assert.ok(refused('connect', 'rate_limited') > 0, 'its reconnections were refused');
  assert.ok(totals.rateLimited > 0 && totals.disconnects > 0 && totals.refusedHandshakes > 0, JSON.stringify(totals));
  assert.ok(server.alive());
});
