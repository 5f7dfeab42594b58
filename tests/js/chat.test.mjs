// Rooms and chat messages with the official socket.io-client: ordering,
// transports, metrics and health endpoints.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';
import { waitFor } from './lib/wait.mjs';

let server;
before(async () => { server = await startServer(['--demo-answer-tokens', '30', '--demo-tokens-per-sec', '30']); });
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, 'a SIGTERM ends the server cleanly');
});

test('two clients in a room see each other\'s messages with contiguous roomSeq', async () => {
  const a = await connect(server.url);
  const b = await connect(server.url);
  const [ra, rb] = [record(a), record(b)];
  assert.deepEqual(await ask(a, 'join', { room: 'pair' }), { ok: { room: 'pair', roomSeq: 0 } });
  assert.deepEqual(await ask(b, 'join', { room: 'pair' }), { ok: { room: 'pair', roomSeq: 0 } });

  // Both send at once, without waiting for each other.
  const acks = await Promise.all(
    Array.from({ length: 25 }, (_, i) => [
      ask(a, 'message', { room: 'pair', text: `a${i}`, clientId: `a-${i}` }),
      ask(b, 'message', { room: 'pair', text: `b${i}` }),
    ]).flat(),
  );
  assert.ok(acks.every((ack) => ack.ok), JSON.stringify(acks.find((x) => !x.ok)));
  await waitFor(() => ra.messages.length === 50 && rb.messages.length === 50, { what: '50 messages each' });

  for (const r of [ra, rb]) {
    assert.deepEqual(r.messages.map((m) => m.roomSeq), Array.from({ length: 50 }, (_, i) => i + 1),
      'delivered in roomSeq order, no gap, no duplicate');
  }
  assert.deepEqual(ra.messages.map((m) => m.id), rb.messages.map((m) => m.id), 'both see the same sequence');
  const fromA = ra.messages.filter((m) => m.from === a.id);
  assert.deepEqual(fromA.map((m) => m.clientId), Array.from({ length: 25 }, (_, i) => `a-${i}`),
    'one sender\'s messages keep the order it sent them in');
  assert.deepEqual(rb.messages.filter((m) => m.from === b.id).map((m) => m.text), Array.from({ length: 25 }, (_, i) => `b${i}`));
  assert.equal(fromA[3].kind, 'chat');
  assert.ok(Math.abs(fromA[0].ts - Date.now()) < 60_000, 'ts is epoch milliseconds');
  assert.deepEqual(acks.map((x) => x.ok.roomSeq).sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i + 1));

  // A late joiner learns where the room is.
  const c = await connect(server.url);
  assert.deepEqual(await ask(c, 'join', { room: 'pair' }), { ok: { room: 'pair', roomSeq: 50 } });
  // Leaving stops delivery.
  assert.deepEqual(await ask(b, 'leave', { room: 'pair' }), { ok: { room: 'pair' } });
  await ask(a, 'message', { room: 'pair', text: 'after leave' });
  await waitFor(() => ra.messages.length === 51, { what: 'message after leave' });
  assert.equal(await ask(c, 'message', { room: 'pair', text: 'sync' }).then((x) => x.ok.roomSeq), 52);
  await waitFor(() => ra.messages.length === 52, { what: 'sync message' });
  assert.equal(rb.messages.length, 50, 'b left and got nothing more');
  for (const s of [a, b, c]) s.close();
});

test('rooms are separate', async () => {
  const a = await connect(server.url);
  const b = await connect(server.url);
  const rb = record(b);
  await ask(a, 'join', { room: 'left-room' });
  await ask(b, 'join', { room: 'right-room' });
  await ask(a, 'message', { room: 'left-room', text: 'only left' });
  assert.equal((await ask(b, 'message', { room: 'right-room', text: 'x' })).ok.roomSeq, 1, 'own counter per room');
  await waitFor(() => rb.messages.length === 1);
  assert.equal(rb.messages[0].text, 'x');
  a.close(); b.close();
});

test('a client restricted to long-polling chats and receives AI answers', async () => {
  const poller = await connect(server.url, { transports: ['polling'] });
  const ws = await connect(server.url, { transports: ['websocket'] });
  assert.equal(poller.io.engine.transport.name, 'polling');
  const rp = record(poller);
  await ask(poller, 'join', { room: 'poll' });
  await ask(ws, 'join', { room: 'poll' });
  await ask(ws, 'message', { room: 'poll', text: 'hello poller' });
  const sent = await ask(poller, 'message', { room: 'poll', text: 'hello ws' });
  assert.equal(sent.ok.roomSeq, 2);
  const q = await ask(poller, 'ai-query', { room: 'poll', prompt: 'are you there?' });
  await rp.done(q.ok.streamId);
  const chunks = rp.stream(q.ok.streamId);
  assert.deepEqual(chunks.map((c) => c.seq), chunks.map((_, i) => i + 1));
  assert.equal(chunks.map((c) => c.chunk).join('').split(' ').length, 30);
  assert.deepEqual(rp.messages.map((m) => m.text), ['hello poller', 'hello ws', 'are you there?']);
  assert.equal(rp.messages[2].kind, 'ai-prompt');
  poller.close(); ws.close();
});

test('/metrics moves with connections and streams; health endpoints answer', async () => {
  // A server of its own, so other tests' sockets do not count.
  const own = await startServer(['--demo-answer-tokens', '40', '--demo-tokens-per-sec', '40']);
  try {
    assert.equal((await fetch(`${own.adminUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${own.adminUrl}/readyz`)).status, 200);
    assert.equal((await fetch(`${own.url}/metrics`)).status, 404, 'metrics are not on the public port');
    let m = await scrapeMetrics(own.adminUrl);
    assert.equal(m.get('chat_connected_sockets'), 0);
    assert.equal(m.get('chat_draining'), 0);

    const sockets = await Promise.all([1, 2, 3].map(() => connect(own.url)));
    m = await scrapeMetrics(own.adminUrl);
    assert.equal(m.get('chat_connected_sockets'), 3);
    const r = record(sockets[0]);
    await Promise.all(sockets.map((s, i) => ask(s, 'join', { room: `m${i % 2}` })));
    m = await scrapeMetrics(own.adminUrl);
    assert.equal(m.get('chat_rooms'), 2);

    const q = await ask(sockets[0], 'ai-query', { room: 'm0', prompt: 'count me' });
    // The answer takes about a second: the stream is active meanwhile.
    await waitFor(async () => (await scrapeMetrics(own.adminUrl)).get('chat_ai_streams_active') === 1, { what: 'an active stream' });
    await r.done(q.ok.streamId);
    await waitFor(async () => (await scrapeMetrics(own.adminUrl)).get('chat_ai_streams_active') === 0, { what: 'no active stream' });
    m = await scrapeMetrics(own.adminUrl);
    assert.equal(m.get('chat_ai_stream_chunks_total'), r.stream(q.ok.streamId).length);
    assert.equal(m.get('chat_ai_tokens_total'), 40);
    assert.equal(m.get('chat_ai_first_chunk_seconds_count'), 1);
    assert.equal(m.get('chat_ai_streams_total{outcome="complete"}'), 1);
    assert.equal(m.get('chat_messages_total'), 1, 'the prompt is a room message');
    await ask(sockets[1], 'message', { room: 'm1', text: 'one more' });
    m = await scrapeMetrics(own.adminUrl);
    assert.equal(m.get('chat_messages_total'), 2);
    assert.equal(m.get('chat_message_handling_seconds_count'), 1);

    for (const s of sockets) s.close();
    await waitFor(async () => (await scrapeMetrics(own.adminUrl)).get('chat_connected_sockets') === 0, { what: 'sockets gone' });
    assert.equal((await scrapeMetrics(own.adminUrl)).get('chat_rooms'), 0);
  } finally {
    await own.stop();
  }
});

test('the demo page serves the pinned official client scripts and the chatscale client library', async () => {
  const served = await (await fetch(`${server.url}/socket.io.min.js`)).text();
  const pinned = await readFile(new URL('./node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url), 'utf8');
  assert.equal(served, pinned, 'chat-server/static/socket.io.min.js must be the npm-pinned socket.io-client build');
  const esm = await fetch(`${server.url}/socket.io.esm.min.js`);
  assert.match(esm.headers.get('content-type'), /text\/javascript/);
  assert.equal(await esm.text(), await readFile(new URL('./node_modules/socket.io-client/dist/socket.io.esm.min.js', import.meta.url), 'utf8'),
    'chat-server/static/socket.io.esm.min.js must be the npm-pinned socket.io-client ES-module build');
  const library = await fetch(`${server.url}/chatscale-client.js`);
  assert.match(library.headers.get('content-type'), /text\/javascript/);
  assert.equal(await library.text(), await readFile(new URL('../../clients/js/src/index.js', import.meta.url), 'utf8'),
    'the page gets clients/js/src/index.js as it is');
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /text\/html/);
});
