// @chatscale/client (clients/js) against the real chat-server: a token,
// join, send, ask, AI chunks assembled in order, typed errors, and the
// exactly-once, in-order guarantee through a drain and through a SIGKILL of
// the client's server behind real nginx and Redis, and a live gap fetched
// from the room log. Also type-checks
// clients/js/test/usage.ts against the package's declarations with tsc.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { io } from 'socket.io-client';
import { ChatClient, ChatError, TimeoutError, ErrorCode } from '@chatscale/client';
import { startServer, startServers, scrapeMetrics } from './lib/server.mjs';
import { startRedis } from './lib/redis.mjs';
import { startNginx } from './lib/nginx.mjs';
import { signJwt, nowSec } from './lib/jwt.mjs';
import { waitFor } from './lib/wait.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const ADMIN = 'admin-token-for-tests';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

/** A client that is closed after the tests. */
function client(url, options) {
  const c = new ChatClient(url, options);
  cleanups.push(() => c.close());
  return c;
}

/** Every roomSeq a room delivers, in delivery order, and its answers' chunks. */
function collect(room) {
  const seqs = [];
  const chunks = new Map(); // streamId -> [seq]
  room.on('message', (m) => seqs.push(m.roomSeq));
  room.on('answer', (answer) => {
    chunks.set(answer.streamId, []);
    answer.on('chunk', (c) => { seqs.push(c.chunk.roomSeq); chunks.get(answer.streamId).push(c.seq); });
  });
  return { seqs, chunks };
}

const oneTo = (n, from = 1) => Array.from({ length: n - from + 1 }, (_, i) => from + i);

test('a token, join, send, ask: ordered events and an assembled answer; typed errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chatscale-client-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const secret = randomBytes(32).toString('hex');
  await writeFile(join(dir, 'secret'), secret);
  const server = await startServer(['--jwt-secret-file', join(dir, 'secret'), '--jwt-leeway', '0s',
    '--demo-answer-tokens', '40', '--demo-tokens-per-sec', '400']);
  cleanups.push(() => server.stop());
  const token = (sub, claims = {}) => signJwt({ sub, exp: nowSec() + 300, rooms: ['team:*'], ...claims }, { key: secret });

  const ann = client(server.url, { token: token('ann') });
  await ann.connect();
  const bob = client(server.url, { getToken: async () => token('bob') });
  const annRoom = await ann.join('team:one');
  const bobRoom = await bob.join('team:one');
  assert.equal(annRoom.joinedAt, 0);
  const seen = collect(bobRoom);
  const others = [];
  bobRoom.on('answer', (a) => others.push(a));

  const sent = await annRoom.send('hello', { clientId: 'c-1' });
  assert.equal(sent.roomSeq, 1);
  const answer = await annRoom.ask('tell me something');
  assert.equal(answer.mine, true);
  assert.equal(answer.questionSeq, 2);
  const deltas = [];
  for await (const delta of answer) deltas.push(delta);
  const result = await answer.done;
  assert.equal(result.outcome, 'complete');
  assert.equal(result.text, deltas.join(''));
  assert.equal(result.text.trim().split(/\s+/).length, 40, 'the whole 40-token answer');

  await waitFor(() => others[0]?.finished, { what: "bob sees ann's answer end" });
  assert.equal(others.length, 1);
  assert.equal(others[0].mine, false);
  assert.equal(others[0].streamId, answer.streamId);
  assert.equal((await others[0].done).text, result.text);
  const chunkSeqs = seen.chunks.get(answer.streamId);
  assert.deepEqual(chunkSeqs, oneTo(chunkSeqs.length), 'chunks in seq order, once each');
  assert.deepEqual(seen.seqs, oneTo(bobRoom.lastSeq), 'every roomSeq once, in order');
  assert.equal(bobRoom.lastSeq, 2 + chunkSeqs.length);

  // Typed errors: each with the server's code and the refused event.
  const refused = async (promise, code, event) => {
    const error = await promise.then(() => assert.fail(`expected ${code}`), (e) => e);
    assert.ok(error instanceof ChatError, String(error));
    assert.equal(error.code, code, error.message);
    if (event) assert.equal(error.event, event);
    return error;
  };
  await refused(ann.join('elsewhere'), ErrorCode.Forbidden, 'join');
  await refused(ann.join('has space'), ErrorCode.InvalidRoom, 'join');
  await refused(annRoom.send('a'.repeat(8 * 1024 + 1)), ErrorCode.TooLarge, 'message');
  await refused(ann.request('message', { room: 'team:never-joined', text: 'hi' }), ErrorCode.NotJoined, 'message');
  await refused(ann.request('message', { room: 'team:one' }), ErrorCode.BadRequest, 'message');
  await refused(client(server.url, { token: 'not.a.token' }).connect(), ErrorCode.Unauthorized, 'connect');
  const expired = await refused(client(server.url, { token: token('old', { exp: nowSec() - 60 }) }).connect(), 'unauthorized');
  assert.match(expired.message, /token expired/);
  await refused(client(server.url).connect(), ErrorCode.Unauthorized, 'connect');
  assert.ok(Object.isFrozen(ErrorCode));

  // An unanswered ack: the server is stopped (SIGSTOP) for the time of one request.
  process.kill(server.pid, 'SIGSTOP');
  try {
    const error = await refused(annRoom.client.request('message', { room: 'team:one', text: 'x' }, { timeoutMs: 300 }), 'timeout');
    assert.ok(error instanceof TimeoutError);
  } finally {
    process.kill(server.pid, 'SIGCONT');
  }
  await annRoom.leave();
  await refused(annRoom.send('after leaving'), ErrorCode.Closed);
  assert.deepEqual(ann.stats.disconnects, []);
  assert.equal(bob.stats.duplicatesDropped, 0);
});

/**
 * Two servers on Redis behind nginx: `reader` (via nginx) on one of them,
 * `talker` directly on the other, both in `room`. Returns them with the
 * reader's server first.
 */
async function twoServers(args, room) {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const pair = await startServers(2, args, redis, { token: ADMIN, cleanups });
  const nginx = await startNginx({ upstreams: pair.map((s) => s.url.replace('http://', '')) });
  cleanups.push(() => nginx.stop());
  const reader = client(nginx.url, { socketOptions: { transports: ['websocket'] } });
  await reader.connect();
  const counts = await Promise.all(pair.map(async (s) => (await scrapeMetrics(s.adminUrl)).get('chat_connected_sockets')));
  assert.deepEqual(counts.toSorted(), [0, 1], `one server holds the reader: ${counts}`);
  const [home, away] = counts[0] === 1 ? pair : [pair[1], pair[0]];
  const talker = client(away.url);
  const readerRoom = await reader.join(room);
  const talkerRoom = await talker.join(room);
  return { home, away, reader, readerRoom, talker, talkerRoom };
}

/** The talker sends a line every 40 ms until stopped; resolves with how many. */
function chatter(talkerRoom) {
  let going = true;
  const done = (async () => {
    let n = 0;
    while (going) { await talkerRoom.send(`line ${n++}`); await new Promise((r) => setTimeout(r, 40)); }
    return n;
  })();
  return { stop: () => { going = false; return done; } };
}

test('drain: the client moves to the other server, and every roomSeq arrives once, in order', async () => {
  const { home, away, reader, readerRoom, talkerRoom } = await twoServers(
    ['--drain-jitter-ms', '0', '--demo-answer-tokens', '300', '--demo-tokens-per-sec', '100'], 'drained');
  const seen = collect(readerRoom);
  const moves = [];
  reader.on('moved', (m) => moves.push(m));
  // A send made while disconnected waits for the resume instead of being refused.
  let sentWhileAway = null;
  reader.once('disconnected', () => { sentWhileAway = readerRoom.send('sent while moving'); });
  const talk = chatter(talkerRoom);
  const answer = await readerRoom.ask('a three-second answer, from the server that drains');
  await waitFor(() => answer.chunks > 3 && seen.seqs.length > 10, { what: 'chat and answer under way' });
  const drain = await fetch(`${home.adminUrl}/drain`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(drain.status, 202);
  await waitFor(() => reader.stats.resumes >= 1, { timeoutMs: 20_000, what: 'the reader resumed' });
  const result = await answer.done;
  const lines = await talk.stop();
  const last = await talkerRoom.send('the end');
  await waitFor(() => readerRoom.lastSeq >= last.roomSeq, { timeoutMs: 20_000, what: 'the reader caught up' });

  assert.deepEqual(seen.seqs, oneTo(last.roomSeq), 'every roomSeq once, in order');
  assert.ok(sentWhileAway, 'a send was made while disconnected');
  assert.ok((await sentWhileAway).roomSeq > 0, 'and accepted after the resume');
  assert.equal(result.outcome, 'complete', 'the drained server ran its answer to the end');
  assert.equal(result.text.trim().split(/\s+/).length, 300);
  assert.deepEqual(seen.chunks.get(answer.streamId), oneTo(answer.chunks));
  assert.equal(moves.length, 1, 'told to move once');
  assert.deepEqual(reader.stats.disconnects, ['transport close']);
  assert.equal(reader.stats.resumes, 1);
  assert.equal((await scrapeMetrics(away.adminUrl)).get('chat_connected_sockets'), 2, 'the reader is on the other server');
  console.log(`# client drain: ${last.roomSeq} events (${lines} lines while moving, ${answer.chunks} answer chunks), ` +
    `${reader.stats.duplicatesDropped} duplicates dropped, ${reader.stats.gapFetches} gap fetches`);
});

test('SIGKILL: the client reconnects to the other server, resumes from the log, and reports the answer interrupted', async () => {
  const { home, away, reader, readerRoom, talkerRoom } = await twoServers(
    ['--demo-answer-tokens', '800', '--demo-tokens-per-sec', '100'], 'crashed');
  const seen = collect(readerRoom);
  const talk = chatter(talkerRoom);
  const answer = await readerRoom.ask('an eight-second answer, cut short');
  await waitFor(() => answer.chunks > 3, { what: 'the answer under way' });
  const { signal } = await home.kill('SIGKILL');
  assert.equal(signal, 'SIGKILL');
  const result = await answer.done;
  const lines = await talk.stop();
  const last = await talkerRoom.send('the end');
  await waitFor(() => readerRoom.lastSeq >= last.roomSeq, { timeoutMs: 20_000, what: 'the reader caught up' });

  assert.deepEqual(seen.seqs, oneTo(last.roomSeq), 'every roomSeq once, in order');
  assert.equal(result.outcome, 'interrupted', 'the surviving server closed the orphaned answer');
  assert.equal(result.error, 'interrupted');
  assert.deepEqual(seen.chunks.get(answer.streamId), oneTo(answer.chunks), 'chunks contiguous up to the close');
  assert.equal(reader.stats.disconnects.length, 1, `one disconnect: ${reader.stats.disconnects}`);
  assert.ok(reader.stats.resumes >= 1);
  assert.equal((await scrapeMetrics(away.adminUrl)).get('chat_connected_sockets'), 2, 'the reader is on the other server');
  console.log(`# client SIGKILL: ${last.roomSeq} events (${lines} lines, ${answer.chunks} answer chunks before the close), ` +
    `disconnect "${reader.stats.disconnects[0]}", ${reader.stats.resumes} resume(s), ${reader.stats.duplicatesDropped} duplicates dropped`);
});

test('a live gap that does not fill is fetched from the room log, on the same connection', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const server = await startServer(['--redis-url', redis.url]);
  cleanups.push(() => server.stop());
  // The real socket, with the first delivery of the line "lost" dropped on
  // the way to the library (as a lost packet would be); its replay passes.
  let dropped = 0;
  const lossy = (url, options) => {
    const socket = io(url, options);
    const on = socket.on.bind(socket);
    socket.on = (event, fn) => on(event, event !== 'message' ? fn
      : (m) => { if (m.text === 'lost' && dropped++ === 0) return; fn(m); });
    return socket;
  };
  const reader = client(server.url, { io: lossy, gapTimeoutMs: 200 });
  const talker = client(server.url);
  const readerRoom = await reader.join('gappy');
  const talkerRoom = await talker.join('gappy');
  const seen = collect(readerRoom);
  const texts = [];
  readerRoom.on('message', (m) => texts.push(m.text));
  for (const text of ['one', 'lost', 'three', 'four']) await talkerRoom.send(text);
  await waitFor(() => readerRoom.lastSeq === 4, { what: 'the gap filled' });
  assert.equal(dropped, 2, 'the first delivery was dropped, the replay passed');
  assert.deepEqual(texts, ['one', 'lost', 'three', 'four']);
  assert.deepEqual(seen.seqs, [1, 2, 3, 4]);
  assert.equal(reader.stats.gapFetches, 1);
  assert.equal(reader.stats.resumes, 1);
  assert.deepEqual(reader.stats.disconnects, [], 'on the same connection');
  assert.ok(reader.stats.duplicatesDropped >= 2, 'the replayed "three" and "four" were dropped');
});

test('the installed @chatscale/client is this repository\'s clients/js (npm ci after changing it)', async () => {
  for (const file of ['src/index.js', 'index.d.ts', 'package.json']) {
    const installed = await readFile(resolve(here, 'node_modules/@chatscale/client', file), 'utf8');
    assert.equal(installed, await readFile(resolve(here, '../../clients/js', file), 'utf8'),
      `tests/js/node_modules/@chatscale/client/${file} is stale: run \`npm ci\` in tests/js`);
  }
});

test('the TypeScript declarations type-check a usage file under --strict', async () => {
  const tsc = resolve(here, 'node_modules/typescript/bin/tsc');
  const dir = await mkdtemp(join(tmpdir(), 'chatscale-tsc-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // The declarations under test are the repository's; socket.io-client's come from here.
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022',
      types: [], skipLibCheck: false, lib: ['es2022', 'dom'],
      paths: {
        '@chatscale/client': [resolve(here, '../../clients/js/index.d.ts')],
        'socket.io-client': [resolve(here, 'node_modules/socket.io-client/build/esm/index.d.ts')],
      },
    },
    files: [resolve(here, '../../clients/js/test/usage.ts')],
  }));
  const run = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')])
    .then(() => ({ code: 0, out: '' }), (e) => ({ code: e.code, out: `${e.stdout}${e.stderr}` }));
  assert.equal(run.code, 0, `tsc --strict found errors:\n${run.out}`);
});
