// The chatscale protocol (README.md, "The protocol in short") on the usual Node.js
// stack: socket.io 4 + @socket.io/redis-adapter + the `redis` npm client. It
// exists so that the same load (chatscale-load, Artillery) runs against both
// servers; it is written the way a team would write it, not tuned:
//
// - default socket.io options (WebSocket and polling, no compression);
// - roomSeq from a Redis INCR per room event when on Redis (an in-process
//   counter otherwise), and a bounded per-room log for `resume`
//   (RPUSH + LTRIM in one MULTI; an in-process array otherwise);
// - the demo AI answer emits one `ai-response-stream` event per token
//   (--tokens-per-emit N batches N tokens per event), with the same
//   deterministic words and token rate as chat-server's demo provider.
//
// Usage: node server.mjs [--port 3000] [--host 127.0.0.1] [--redis-url redis://...]
//   [--demo-tokens-per-sec 50] [--demo-answer-tokens 200] [--tokens-per-emit 1]
//   [--room-log-len 1000] [--key-prefix chatscale-ref]
// Prints "node-reference listening on http://HOST:PORT" once it listens.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '3000' },
    host: { type: 'string', default: '127.0.0.1' },
    'redis-url': { type: 'string', default: process.env.REDIS_URL },
    'demo-tokens-per-sec': { type: 'string', default: '50' },
    'demo-answer-tokens': { type: 'string', default: '200' },
    'tokens-per-emit': { type: 'string', default: '1' },
    'room-log-len': { type: 'string', default: '1000' },
    'key-prefix': { type: 'string', default: 'chatscale-ref' },
  },
});

const TOKENS_PER_SEC = Math.max(1, Number(opts['demo-tokens-per-sec']));
const ANSWER_TOKENS = Number(opts['demo-answer-tokens']);
const TOKENS_PER_EMIT = Math.max(1, Number(opts['tokens-per-emit']));
const LOG_LEN = Number(opts['room-log-len']);
const PREFIX = opts['key-prefix'];
const MAX_TEXT_BYTES = 8 * 1024;
const MAX_PROMPT_BYTES = 32 * 1024;
const MAX_ROOMS_PER_SOCKET = 50;
const ROOM = /^[A-Za-z0-9._:-]{1,128}$/;

// Same words and start as chat-server/src/ai/demo.rs, so answers match.
const WORDS = ['we', 'send', 'each', 'new', 'bit', 'of', 'the', 'AI', 'text', 'as', 'it', 'is', 'made,',
  'but', 'in', 'small', 'sets:', 'a', 'set', 'goes', 'out', 'when', 'it', 'has', 'a', 'few',
  'words', 'or', 'a', 'tick', 'has', 'gone', 'by.', 'So', 'all', 'in', 'the', 'room', 'see',
  'one', 'flow', 'in', 'one', 'order,', 'and', 'one', 'who', 'was', 'away', 'gets', 'just',
  'what', 'was', 'lost,', 'no', 'gap', 'and', 'no', 'dup.'];

function demoTokens(prompt, count) {
  let h = 0n;
  for (const b of Buffer.from(prompt)) h = (h * 31n + BigInt(b)) & 0xffffffffffffffffn;
  const start = Number(h % BigInt(WORDS.length));
  return Array.from({ length: count }, (_, i) => {
    const word = WORDS[(start + i) % WORDS.length];
    return i + 1 === count ? word : `${word} `;
  });
}

// ---- shared state: Redis when configured, this process otherwise ----------
let redis = null;
const seqs = new Map();
const logs = new Map();

async function nextSeq(room) {
  if (redis) return Number(await redis.incr(`${PREFIX}:{${room}}:seq`));
  const seq = (seqs.get(room) ?? 0) + 1;
  seqs.set(room, seq);
  return seq;
}

async function lastSeq(room) {
  if (redis) return Number((await redis.get(`${PREFIX}:{${room}}:seq`)) ?? 0);
  return seqs.get(room) ?? 0;
}

async function appendLog(room, event, data) {
  const entry = JSON.stringify({ event, data });
  if (redis) {
    const key = `${PREFIX}:{${room}}:log`;
    await redis.multi().rPush(key, entry).lTrim(key, -LOG_LEN, -1).exec();
    return;
  }
  const log = logs.get(room) ?? [];
  log.push(entry);
  if (log.length > LOG_LEN) log.shift();
  logs.set(room, log);
}

async function readLog(room) {
  if (redis) return redis.lRange(`${PREFIX}:{${room}}:log`, 0, -1);
  return logs.get(room) ?? [];
}

// ---- server ------------------------------------------------------------------
const httpServer = createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer);

if (opts['redis-url']) {
  redis = createClient({ url: opts['redis-url'] });
  const pub = redis.duplicate();
  const sub = redis.duplicate();
  await Promise.all([redis.connect(), pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, { key: `${PREFIX}-socket.io` }));
}

const fail = (code, message) => ({ error: { code, message } });

function check(socket, data, fields) {
  if (!data || typeof data !== 'object') return fail('bad_request', `expected {${fields.join(', ')}}`);
  if (typeof data.room !== 'string' || !ROOM.test(data.room)) {
    return fail('invalid_room', 'room names are 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  return null;
}

async function publish(room, event, data) {
  data.roomSeq = await nextSeq(room);
  await appendLog(room, event, data);
  io.to(room).emit(event, data);
  return data;
}

async function postMessage(socket, room, text, kind, clientId) {
  const message = {
    room, roomSeq: 0, id: randomUUID(), from: socket.id, text, ts: Date.now(), kind,
  };
  if (clientId !== undefined) message.clientId = clientId;
  return publish(room, 'message', message);
}

function streamAnswer(room, streamId, prompt) {
  const tokens = demoTokens(prompt, ANSWER_TOKENS);
  let next = 0;
  let seq = 0;
  let pending = '';
  let chain = Promise.resolve();
  const timer = setInterval(() => {
    pending += tokens[next++];
    const done = next >= tokens.length;
    if (done) clearInterval(timer);
    if (!done && (next % TOKENS_PER_EMIT) !== 0) return;
    const chunk = { room, roomSeq: 0, streamId, seq: ++seq, chunk: pending, done, ts: Date.now() };
    pending = '';
    // Keep the stream's events in order while INCR round trips overlap.
    chain = chain.then(() => publish(room, 'ai-response-stream', chunk)).catch((e) => {
      console.error('stream emit failed', e);
    });
  }, 1000 / TOKENS_PER_SEC);
}

function guard(handler) {
  return async (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    try {
      reply(await handler(data));
    } catch (error) {
      console.error(error);
      reply(fail('unavailable', 'shared state could not be read or written; try again'));
    }
  };
}

io.on('connection', (socket) => {
  socket.on('join', guard(async (data) => {
    const bad = check(socket, data, ['room']);
    if (bad) return bad;
    if (!socket.rooms.has(data.room) && socket.rooms.size - 1 >= MAX_ROOMS_PER_SOCKET) {
      return fail('too_many_rooms', `a socket may be in at most ${MAX_ROOMS_PER_SOCKET} rooms`);
    }
    socket.join(data.room);
    return { ok: { room: data.room, roomSeq: await lastSeq(data.room) } };
  }));

  socket.on('leave', guard(async (data) => {
    const bad = check(socket, data, ['room']);
    if (bad) return bad;
    socket.leave(data.room);
    return { ok: { room: data.room } };
  }));

  socket.on('message', guard(async (data) => {
    const bad = check(socket, data, ['room', 'text', 'clientId?']);
    if (bad) return bad;
    if (typeof data.text !== 'string') return fail('bad_request', 'expected {room, text, clientId?}');
    if (Buffer.byteLength(data.text) > MAX_TEXT_BYTES) return fail('too_large', 'text is too large');
    if (!socket.rooms.has(data.room)) return fail('not_joined', 'join the room first');
    const message = await postMessage(socket, data.room, data.text, 'chat', data.clientId);
    return { ok: { id: message.id, roomSeq: message.roomSeq } };
  }));

  socket.on('ai-query', guard(async (data) => {
    const bad = check(socket, data, ['room', 'prompt']);
    if (bad) return bad;
    if (typeof data.prompt !== 'string') return fail('bad_request', 'expected {room, prompt}');
    if (Buffer.byteLength(data.prompt) > MAX_PROMPT_BYTES) return fail('too_large', 'prompt is too large');
    if (!socket.rooms.has(data.room)) return fail('not_joined', 'join the room first');
    const question = await postMessage(socket, data.room, data.prompt, 'ai-prompt');
    const streamId = randomUUID();
    streamAnswer(data.room, streamId, data.prompt);
    return { ok: { streamId, roomSeq: question.roomSeq } };
  }));

  socket.on('resume', guard(async (data) => {
    const bad = check(socket, data, ['room', 'after']);
    if (bad) return bad;
    if (!Number.isInteger(data.after) || data.after < 0) return fail('bad_request', 'expected {room, after}');
    socket.join(data.room);
    const entries = (await readLog(data.room)).map((e) => JSON.parse(e));
    const oldest = entries.length ? entries[0].data.roomSeq : 0;
    if (entries.length && data.after + 1 < oldest) {
      return { error: { code: 'resume_too_old', message: 'the room log no longer reaches back that far', oldestRoomSeq: oldest } };
    }
    let replayed = 0;
    for (const { event, data: payload } of entries) {
      if (payload.roomSeq > data.after) {
        socket.emit(event, payload);
        replayed += 1;
      }
    }
    return { ok: { room: data.room, replayed, roomSeq: await lastSeq(data.room) } };
  }));
});

httpServer.listen(Number(opts.port), opts.host, () => {
  const { address, port } = httpServer.address();
  console.log(`node-reference listening on http://${address}:${port}`);
});

const shutdown = () => {
  io.close();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
