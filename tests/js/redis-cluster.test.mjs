// Many chat-servers on one real redis-server act as one: cross-server rooms
// and AI answers, replay on reconnect to another server, shared history,
// key prefixes, and surviving a Redis crash without restarting anything.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';
import { startRedis, startRedisCluster } from './lib/redis.mjs';
import { startFakeOpenAi } from './lib/fake-ai.mjs';
import { waitFor } from './lib/wait.mjs';
import { signJwt, nowSec } from './lib/jwt.mjs';
import { randomBytes } from 'node:crypto';

const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function cluster(count, args = [], { env } = {}) {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const servers = [];
  for (let i = 0; i < count; i++) {
    const server = await startServer(['--redis-url', redis.url, ...args], { env });
    cleanups.push(() => server.stop());
    servers.push(server);
  }
  return { redis, servers };
}

async function member(server, room) {
  const socket = await connect(server.url);
  cleanups.push(() => socket.close());
  const recorder = record(socket);
  const joined = await ask(socket, 'join', { room });
  assert.ok(joined.ok, JSON.stringify(joined));
  return { socket, recorder };
}

/** The client rule: order by roomSeq, drop duplicates. */
const inRoomOrder = (events) => [...new Map(events.map((e) => [e.roomSeq, e])).values()].sort((a, b) => a.roomSeq - b.roomSeq);
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('three servers on one Redis: one conversation, contiguous roomSeq, answers in order', async () => {
  const { servers } = await cluster(3, ['--demo-answer-tokens', '60', '--demo-tokens-per-sec', '200']);
  const members = [];
  for (let i = 0; i < 6; i++) members.push(await member(servers[i % 3], 'shared'));

  // Everyone talks at once, from every server.
  const acks = await Promise.all(members.flatMap(({ socket }, i) =>
    range(1, 10).map((n) => ask(socket, 'message', { room: 'shared', text: `m${i}-${n}`, clientId: `${i}-${n}` }))));
  assert.ok(acks.every((a) => a.ok), JSON.stringify(acks.find((a) => !a.ok)));
  const q = await ask(members[4].socket, 'ai-query', { room: 'shared', prompt: 'explain' });
  await Promise.all(members.map(({ recorder }) => recorder.done(q.ok.streamId)));

  const total = 60 + 1; // sixty lines and the prompt
  for (const [i, { recorder }] of members.entries()) {
    await waitFor(() => recorder.messages.length === total, { what: `member ${i}: ${total} messages` });
    const messages = inRoomOrder(recorder.messages);
    assert.equal(messages.length, total, 'no duplicates');
    const chunks = recorder.stream(q.ok.streamId);
    const all = inRoomOrder([...recorder.messages, ...chunks]);
    assert.deepEqual(all.map((e) => e.roomSeq), range(1, all.length), `member ${i}: contiguous roomSeq`);
    assert.deepEqual(chunks.map((c) => c.seq), range(1, chunks.length), `member ${i}: chunks in seq order`);
    assert.equal(chunks.map((c) => c.chunk).join('').split(' ').length, 60, `member ${i}: whole answer`);
    for (let sender = 0; sender < 6; sender++) {
      const mine = messages.filter((m) => m.clientId?.startsWith(`${sender}-`)).map((m) => m.clientId);
      assert.deepEqual(mine, range(1, 10).map((n) => `${sender}-${n}`), 'each sender\'s lines keep their order');
    }
  }
  for (const server of servers) {
    const m = await scrapeMetrics(server.adminUrl);
    assert.equal(m.get('chat_redis_up'), 1);
    // Room events ride on the store's append script, not on adapter publishes.
    assert.equal(m.get('chat_redis_publish_total'), 0, 'no adapter publish for room events');
    assert.ok(m.get('chat_redis_messages_received_total') >= 61, 'the room\'s events came in on its channel');
    assert.ok(m.get('chat_cross_server_delay_seconds_count') > 0, 'events from other servers were timed');
  }
  const m0 = await scrapeMetrics(servers[0].adminUrl);
  const p = (le) => m0.get(`chat_cross_server_delay_seconds_bucket{le="${le}"}`) / m0.get('chat_cross_server_delay_seconds_count');
  console.log(`# cross-server delay on server 0: ${m0.get('chat_cross_server_delay_seconds_count')} events, ${(100 * p('0.005')).toFixed(0)}% within 5 ms, ${(100 * p('0.025')).toFixed(0)}% within 25 ms`);
});

test('a client that reconnects to another server resumes with every event exactly once', async () => {
  const { servers } = await cluster(2, ['--demo-answer-tokens', '40', '--demo-tokens-per-sec', '100']);
  const talker = await member(servers[0], 'replay');
  const leaver = await member(servers[0], 'replay');
  for (let n = 1; n <= 5; n++) await ask(talker.socket, 'message', { room: 'replay', text: `before ${n}` });
  await waitFor(() => leaver.recorder.messages.length === 5, { what: 'five messages before leaving' });
  const seen = [...leaver.recorder.messages];
  const highest = Math.max(...seen.map((m) => m.roomSeq));
  leaver.socket.close();

  // Missed while away: messages and a whole AI answer.
  for (let n = 1; n <= 5; n++) await ask(talker.socket, 'message', { room: 'replay', text: `missed ${n}` });
  const q = await ask(talker.socket, 'ai-query', { room: 'replay', prompt: 'while you were away' });
  await talker.recorder.done(q.ok.streamId);

  const back = await connect(servers[1].url);
  cleanups.push(() => back.close());
  const recorder = record(back);
  // Live traffic keeps flowing during the resume.
  const live = ask(talker.socket, 'message', { room: 'replay', text: 'during resume' });
  const resumed = await ask(back, 'resume', { room: 'replay', after: highest });
  assert.ok(resumed.ok, JSON.stringify(resumed));
  await live;
  const after = await ask(talker.socket, 'message', { room: 'replay', text: 'after resume' });
  const last = after.ok.roomSeq;
  await waitFor(() => new Set([...recorder.messages, ...recorder.chunks].map((e) => e.roomSeq)).has(last), { what: 'the message after resume' });

  const events = [...seen, ...recorder.messages, ...recorder.chunks];
  const ordered = inRoomOrder(events);
  assert.deepEqual(ordered.map((e) => e.roomSeq), range(1, last), 'no gap');
  const received = [...recorder.messages, ...recorder.chunks].map((e) => e.roomSeq);
  const duplicates = received.length - new Set(received).size;
  console.log(`# resume: replayed ${resumed.ok.replayed} events, ${duplicates} duplicates dropped by the client rule`);
  const answer = ordered.filter((e) => e.streamId === q.ok.streamId);
  assert.equal(answer.at(-1).done, true);
  assert.equal(answer.map((c) => c.chunk).join('').split(' ').length, 40, 'the missed answer is complete');
  assert.deepEqual(ordered.filter((e) => e.text?.startsWith('missed')).map((e) => e.text), range(1, 5).map((n) => `missed ${n}`));

  // Too old: the log is trimmed.
  const small = await cluster(1, ['--room-log-len', '10']);
  const a = await member(small.servers[0], 'short');
  for (let n = 1; n <= 300; n++) await ask(a.socket, 'message', { room: 'short', text: `${n}` });
  const tooOld = await ask(a.socket, 'resume', { room: 'short', after: 1 });
  assert.equal(tooOld.error?.code, 'resume_too_old', JSON.stringify(tooOld));
  assert.ok(tooOld.error.oldestRoomSeq > 2 && tooOld.error.oldestRoomSeq <= 291, `oldest ${tooOld.error.oldestRoomSeq}`);
  const fromOldest = await ask(a.socket, 'resume', { room: 'short', after: tooOld.error.oldestRoomSeq - 1 });
  assert.equal(fromOldest.ok.roomSeq, 300);
});

test('an AI query on server B sees history written through server A', async () => {
  const fake = await startFakeOpenAi(() => ({ tokens: [{ text: 'ok', at: 0 }] }));
  cleanups.push(() => fake.close());
  const { servers } = await cluster(2, ['--ai-provider', 'openai', '--openai-base-url', fake.baseUrl]);
  const a = await member(servers[0], 'history');
  const b = await member(servers[1], 'history');
  await ask(a.socket, 'message', { room: 'history', text: 'the launch is on friday' });
  const q = await ask(b.socket, 'ai-query', { room: 'history', prompt: 'when is the launch?' });
  await b.recorder.done(q.ok.streamId);
  const sent = fake.requests[0].body.messages;
  assert.ok(sent.some((m) => m.role === 'user' && m.content.endsWith('the launch is on friday')), JSON.stringify(sent));
  assert.equal(sent.at(-1).content, 'when is the launch?');
});

test('two key prefixes on one Redis do not see each other', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const [blue, green] = await Promise.all(['blue', 'green'].map(async (prefix) => {
    const server = await startServer(['--redis-url', redis.url, '--key-prefix', prefix]);
    cleanups.push(() => server.stop());
    return server;
  }));
  const b = await member(blue, 'same-name');
  const g = await member(green, 'same-name');
  assert.equal((await ask(b.socket, 'message', { room: 'same-name', text: 'blue only' })).ok.roomSeq, 1);
  assert.equal((await ask(g.socket, 'message', { room: 'same-name', text: 'green only' })).ok.roomSeq, 1, 'separate counters');
  await waitFor(() => b.recorder.messages.length === 1 && g.recorder.messages.length === 1);
  // One more round trip each: anything crossing over would have arrived by now.
  await ask(b.socket, 'message', { room: 'same-name', text: 'sync' });
  await ask(g.socket, 'message', { room: 'same-name', text: 'sync' });
  await waitFor(() => b.recorder.messages.length === 2 && g.recorder.messages.length === 2);
  assert.deepEqual(b.recorder.messages.map((m) => m.text), ['blue only', 'sync']);
  assert.deepEqual(g.recorder.messages.map((m) => m.text), ['green only', 'sync']);
  const keys = (await redis.cli('--scan')).trim().split('\n').sort();
  assert.ok(keys.every((k) => k.startsWith('blue:') || k.startsWith('green:')), keys.join(' '));
});

test('Redis killed mid-run and restarted: servers survive and recover by themselves', async () => {
  const { redis, servers } = await cluster(2, ['--demo-answer-tokens', '300', '--demo-tokens-per-sec', '100']);
  const a1 = await member(servers[0], 'outage');
  const a2 = await member(servers[0], 'outage');
  const b1 = await member(servers[1], 'outage');
  assert.equal((await ask(a1.socket, 'message', { room: 'outage', text: 'before' })).ok.roomSeq, 1);
  const q = await ask(a1.socket, 'ai-query', { room: 'outage', prompt: 'a long answer' });
  await waitFor(() => a2.recorder.stream(q.ok.streamId).length > 3, { what: 'the answer to start' });

  await redis.kill();
  await waitFor(async () => (await scrapeMetrics(servers[0].adminUrl)).get('chat_redis_up') === 0, { what: 'chat_redis_up 0' });
  // Local delivery continues: a message on server 0 reaches its other member, unsequenced.
  const during = await ask(a1.socket, 'message', { room: 'outage', text: 'during the outage' });
  assert.ok(during.ok, JSON.stringify(during));
  assert.equal(during.ok.roomSeq, null);
  await waitFor(() => a2.recorder.messages.some((m) => m.text === 'during the outage'), { what: 'local delivery' });
  // Features that need Redis say so.
  assert.equal((await ask(a1.socket, 'resume', { room: 'outage', after: 0 })).error?.code, 'unavailable');
  for (const s of servers) assert.ok(s.alive());

  await redis.restart();
  for (const s of servers) {
    await waitFor(async () => (await scrapeMetrics(s.adminUrl)).get('chat_redis_up') === 1, { timeoutMs: 20_000, what: 'chat_redis_up 1' });
  }
  // The store and cross-server delivery are back, with no restart.
  await waitFor(async () => {
    const ack = await ask(a1.socket, 'message', { room: 'outage', text: 'after the outage' });
    return ack.ok?.roomSeq != null && b1.recorder.messages.some((m) => m.text === 'after the outage' && m.roomSeq === ack.ok.roomSeq);
  }, { timeoutMs: 20_000, everyMs: 250, what: 'a sequenced message from server 0 reaching server 1' });
  const back = await ask(b1.socket, 'message', { room: 'outage', text: 'from server 1' });
  await waitFor(() => a1.recorder.messages.some((m) => m.id === back.ok.id), { what: 'server 1 to server 0' });
  // Both servers listen on the room's channel again (the restarted Redis had no subscriptions).
  const numsub = (await redis.cli('PUBSUB', 'NUMSUB', 'chatscale:{outage}:events')).trim().split('\n')[1];
  assert.equal(numsub, '2', 'each server resubscribed the room channel it has members for');
  // The interrupted answer still finished for local members.
  await a2.recorder.done(q.ok.streamId);
  const chunks = a2.recorder.stream(q.ok.streamId);
  assert.deepEqual(chunks.map((c) => c.seq), range(1, chunks.length));
  for (const s of servers) assert.ok(s.alive(), 'no chat-server restarted');
  const m = await scrapeMetrics(servers[0].adminUrl);
  assert.ok(m.get('chat_redis_errors_total') > 0);
});

test('concurrent AI answers are counted over every server; a dead server\'s answers stop counting', async () => {
  const secret = randomBytes(32).toString('hex');
  const { servers: [one, two] } = await cluster(2, [
    '--max-ai-answers-per-user', '1', '--max-ai-answers-per-room', '2',
    '--demo-answer-tokens', '200', '--demo-tokens-per-sec', '20',
  ], { env: { CHAT_JWT_SECRET: secret } });
  const as = async (server, sub) => {
    const token = signJwt({ sub, exp: nowSec() + 300, rooms: ['*'] }, { key: secret });
    const socket = await connect(server.url, { auth: { token } });
    cleanups.push(() => socket.close());
    assert.ok((await ask(socket, 'join', { room: 'ai' })).ok);
    return socket;
  };
  const [annOnOne, annOnTwo, bobOnTwo, catOnOne] = [await as(one, 'ann'), await as(two, 'ann'), await as(two, 'bob'), await as(one, 'cat')];
  const first = await ask(annOnOne, 'ai-query', { room: 'ai', prompt: 'a ten-second answer' });
  assert.ok(first.ok, JSON.stringify(first));
  const again = await ask(annOnTwo, 'ai-query', { room: 'ai', prompt: 'ann again, through the other server' });
  assert.equal(again.error?.code, 'rate_limited', JSON.stringify(again));
  assert.match(again.error.message, /per user/);
  assert.ok((await ask(bobOnTwo, 'ai-query', { room: 'ai', prompt: 'bob' })).ok);
  const third = await ask(catOnOne, 'ai-query', { room: 'ai', prompt: 'cat' });
  assert.equal(third.error?.code, 'rate_limited', JSON.stringify(third));
  assert.match(third.error.message, /per room/);

  // Ann's server dies mid-answer: her place comes back when its lease lapses
  // (5 s after the last renewal), not when the 10-second answer would have ended.
  const killedAt = performance.now();
  await one.kill('SIGKILL');
  const freed = await waitFor(async () => {
    const retry = await ask(annOnTwo, 'ai-query', { room: 'ai', prompt: 'after the crash' });
    if (retry.ok) return performance.now() - killedAt;
    assert.equal(retry.error?.code, 'rate_limited', JSON.stringify(retry));
    return false;
  }, { timeoutMs: 15_000, everyMs: 200, what: "ann's place to come back" });
  assert.ok(freed > 1_000 && freed < 8_000, `freed ${Math.round(freed)} ms after the crash`);
});

test('Redis Cluster mode: sharded pub/sub and per-room slots across three shards', async () => {
  const redisCluster = await startRedisCluster(3);
  cleanups.push(() => redisCluster.stop());
  const args = ['--redis-url', redisCluster.url, '--redis-cluster', '--demo-answer-tokens', '30', '--demo-tokens-per-sec', '300'];
  const servers = [];
  for (let i = 0; i < 2; i++) {
    const server = await startServer(args);
    cleanups.push(() => server.stop());
    servers.push(server);
  }
  // Rooms whose keys hash to different shards.
  const rooms = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
  for (const room of rooms) {
    const a = await member(servers[0], room);
    const b = await member(servers[1], room);
    const sent = await ask(a.socket, 'message', { room, text: `hello ${room}` });
    assert.equal(sent.ok.roomSeq, 1, JSON.stringify(sent));
    const q = await ask(b.socket, 'ai-query', { room, prompt: 'hi' });
    await a.recorder.done(q.ok.streamId);
    const all = inRoomOrder([...a.recorder.messages, ...a.recorder.chunks]);
    assert.deepEqual(all.map((e) => e.roomSeq), range(1, all.length), `${room}: contiguous across servers`);
    assert.equal(a.recorder.stream(q.ok.streamId).map((c) => c.chunk).join('').split(' ').length, 30);
    const replay = await ask(b.socket, 'resume', { room, after: 0 });
    assert.equal(replay.ok.replayed, all.length, `${room}: the log replays from the shard`);
  }
  const keysPerShard = await Promise.all(redisCluster.ports.map(async (port) => Number((await redisCluster.cli(port, 'dbsize')).trim())));
  assert.ok(keysPerShard.filter((n) => n > 0).length >= 2, `the rooms span several shards: ${keysPerShard}`);
  for (const s of servers) {
    const m = await scrapeMetrics(s.adminUrl);
    assert.equal(m.get('chat_redis_up'), 1);
    assert.ok(m.get('chat_cross_server_delay_seconds_count') > 0, 'sharded pub/sub carried events between servers');
  }
});
