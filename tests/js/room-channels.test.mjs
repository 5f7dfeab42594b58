// Per-room channels (`--room-channels per-room`, the default) on a real
// redis-server: a server listens on a room's channel only while it has a
// member of the room, so it receives no other room's events; a join that
// races a stream of events on a server new to the room misses none after its
// roomSeq; on a Redis Cluster the room channels spread over the shards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';
import { startRedis, startRedisCluster } from './lib/redis.mjs';
import { waitFor } from './lib/wait.mjs';

const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function redis() {
  const r = await startRedis();
  cleanups.push(() => r.stop());
  return r;
}

async function server(args) {
  const s = await startServer(args);
  cleanups.push(() => s.stop());
  return s;
}

async function member(s, room) {
  const socket = await connect(s.url);
  cleanups.push(() => socket.close());
  const recorder = record(socket);
  const joined = await ask(socket, 'join', { room });
  assert.ok(joined.ok, JSON.stringify(joined));
  return { socket, recorder, joinedAt: joined.ok.roomSeq };
}

const metric = async (s, name) => (await scrapeMetrics(s.adminUrl)).get(name);
const subscribers = async (r, channel) => Number((await r.cli('PUBSUB', 'NUMSUB', channel)).trim().split('\n')[1]);

test('a server listens on a room channel only while it has a member there, and receives no other room', async () => {
  const r = await redis();
  const [a, b] = [await server(['--redis-url', r.url]), await server(['--redis-url', r.url])];
  const channel = 'chatscale:{together}:events';

  const onA = await member(a, 'together');
  assert.equal(await subscribers(r, channel), 1, 'the first member subscribes its server');
  const onB = await member(b, 'together');
  assert.equal(await subscribers(r, channel), 2, 'one subscription per server, taken before the join answers');
  assert.equal(await metric(b, 'chat_room_channels'), 1);
  const sent = await ask(onA.socket, 'message', { room: 'together', text: 'across' });
  await waitFor(() => onB.recorder.messages.some((m) => m.roomSeq === sent.ok.roomSeq), { what: 'cross-server delivery' });

  // A room with members on server a only: b receives none of its events.
  const alone = await member(a, 'only-on-a');
  const other = await member(a, 'only-on-a');
  const bBefore = await metric(b, 'chat_redis_messages_received_total');
  for (let n = 1; n <= 20; n++) assert.ok((await ask(alone.socket, 'message', { room: 'only-on-a', text: `${n}` })).ok);
  await waitFor(() => other.recorder.messages.length === 20, { what: 'local delivery' });
  // A marker on the room b is in: once b has it, anything published before it has arrived.
  const marker = await ask(onA.socket, 'message', { room: 'together', text: 'marker' });
  await waitFor(() => onB.recorder.messages.some((m) => m.roomSeq === marker.ok.roomSeq), { what: 'the marker on b' });
  assert.equal(await metric(b, 'chat_redis_messages_received_total'), bBefore + 1, 'b received the marker and nothing of only-on-a');

  // The last member of a server leaving (a leave, then a disconnect) ends its subscription.
  assert.ok((await ask(onB.socket, 'leave', { room: 'together' })).ok);
  await waitFor(async () => (await subscribers(r, channel)) === 1, { what: 'b to unsubscribe after its last member left' });
  assert.equal(await metric(b, 'chat_room_channels'), 0);
  onA.socket.close();
  await waitFor(async () => (await subscribers(r, channel)) === 0, { what: 'a to unsubscribe after its last member disconnected' });
  assert.equal(await subscribers(r, 'chatscale:{only-on-a}:events'), 1, 'a still listens where it has members');
  assert.equal(await metric(a, 'chat_room_channels'), 1);
});

test('a server on the shared channel (an older release) and a per-room server: events cross live both ways once resumed', async () => {
  const r = await redis();
  const older = await server(['--redis-url', r.url, '--room-channels', 'shared']);
  const newer = await server(['--redis-url', r.url]);
  const onOlder = await member(older, 'upgrade');
  const onNewer = await member(newer, 'upgrade');
  // The older server's events reach the newer server's members live.
  const fromOlder = await ask(onOlder.socket, 'message', { room: 'upgrade', text: 'from the older server' });
  await waitFor(() => onNewer.recorder.messages.some((m) => m.roomSeq === fromOlder.ok.roomSeq), { what: 'older to newer, live' });
  // The newer server's events are not on the shared channel: the older
  // server's members get them when they resume (as they move off a drained pod).
  const fromNewer = await ask(onNewer.socket, 'message', { room: 'upgrade', text: 'from the newer server' });
  const resumed = await ask(onOlder.socket, 'resume', { room: 'upgrade', after: fromOlder.ok.roomSeq });
  assert.equal(resumed.ok.replayed, 1, JSON.stringify(resumed));
  await waitFor(() => onOlder.recorder.messages.some((m) => m.roomSeq === fromNewer.ok.roomSeq), { what: 'newer to older, by resume' });
});

test('joins racing a stream of events, each on a server new to the room, miss no event after their roomSeq', async () => {
  const r = await redis();
  const unlimited = ['--events-per-sec', '100000', '--events-burst', '100000', '--user-events-per-sec', '100000'];
  const [a, b] = [await server(['--redis-url', r.url, ...unlimited]), await server(['--redis-url', r.url])];
  // Four talkers publish back to back.
  const talkers = [];
  for (let i = 0; i < 4; i++) talkers.push(await member(a, 'race'));
  let latest = 0;
  let talking = true;
  const talk = async ({ socket }, lane) => {
    for (let n = 0; talking; n++) {
      const ack = await ask(socket, 'message', { room: 'race', text: `${lane}-${n}` });
      assert.ok(ack.ok?.roomSeq, JSON.stringify(ack));
      latest = Math.max(latest, ack.ok.roomSeq);
    }
  };
  const lanes = talkers.map(talk);
  let checked = 0;
  try {
    for (let round = 0; round < 25; round++) {
      // b has no member of the room: this join subscribes b to its channel
      // while the talkers' events are published.
      await waitFor(async () => (await metric(b, 'chat_room_channels')) === 0, { what: `b to have left the room channel (round ${round})` });
      const joiner = await member(b, 'race');
      const from = joiner.joinedAt;
      const until = latest + 10;
      await waitFor(() => latest >= until, { what: 'ten more events' });
      const missing = () => {
        const got = new Set(joiner.recorder.messages.map((m) => m.roomSeq));
        return Array.from({ length: until - from }, (_, i) => from + 1 + i).filter((seq) => !got.has(seq));
      };
      await waitFor(() => missing().length === 0, { timeoutMs: 5_000, what: `round ${round}: every roomSeq from ${from + 1} to ${until} on the new joiner` })
        .catch((error) => { throw new Error(`${error.message}; missing ${missing().slice(0, 10)}`); });
      checked += until - from;
      // Alternate the two ways out: a leave and a disconnect.
      if (round % 2) joiner.socket.close(); else assert.ok((await ask(joiner.socket, 'leave', { room: 'race' })).ok);
    }
  } finally {
    talking = false;
    await Promise.all(lanes);
  }
  console.log(`# join race: 25 joins on a server new to the room, ${checked} events after their roomSeq, none missed`);
});

test('Redis Cluster: room channels are shard channels spread over the shards, subscribed where members are', async () => {
  const cluster = await startRedisCluster(3);
  cleanups.push(() => cluster.stop());
  const args = ['--redis-url', cluster.url, '--redis-cluster'];
  const [a, b] = [await server(args), await server(args)];
  const rooms = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
  for (const room of rooms) {
    const x = await member(a, room);
    const y = await member(b, room);
    const sent = await ask(x.socket, 'message', { room, text: room });
    await waitFor(() => y.recorder.messages.some((m) => m.roomSeq === sent.ok.roomSeq), { what: `${room} across servers` });
  }
  const perShard = await Promise.all(cluster.ports.map(async (port) =>
    (await cluster.cli(port, 'PUBSUB', 'SHARDCHANNELS', 'chatscale:*')).trim().split('\n').filter(Boolean)));
  const all = perShard.flat().sort();
  assert.deepEqual(all, rooms.map((room) => `chatscale:{${room}}:events`).sort(), 'one shard channel per room');
  assert.ok(perShard.filter((channels) => channels.length > 0).length >= 2, `spread over the shards: ${perShard.map((c) => c.length)}`);
  for (const s of [a, b]) assert.equal(await metric(s, 'chat_room_channels'), rooms.length);
});
