/**
 * @chatscale/client: the chatscale chat protocol on the official
 * socket.io-client, so that an app does not write the reconnection recipe by
 * hand. It delivers each room's `message` and `ai-response-stream` events in
 * strict `roomSeq` order, each exactly once, across disconnects, drains,
 * server changes and crashes: on every reconnect it resumes each room after
 * its highest contiguous `roomSeq`, buffers events that arrive early, and
 * fetches a live gap that does not fill from the room log. AI answers are
 * assembled from their chunks. One ES module, no build step; Node 20 and
 * browsers (import `socket.io-client` through an import map there).
 */
import { io as defaultIo } from 'socket.io-client';

/** Every `code` a ChatError may carry: the server's ack codes, then the client's own. */
export const ErrorCode = Object.freeze({
  BadRequest: 'bad_request',
  InvalidRoom: 'invalid_room',
  TooLarge: 'too_large',
  TooManyRooms: 'too_many_rooms',
  NotJoined: 'not_joined',
  Unavailable: 'unavailable',
  ResumeTooOld: 'resume_too_old',
  Forbidden: 'forbidden',
  RateLimited: 'rate_limited',
  /** The handshake was refused for its token (`connect_error` "unauthorized: ..."). */
  Unauthorized: 'unauthorized',
  /** No ack within the time allowed. */
  Timeout: 'timeout',
  /** The client or the room was closed first. */
  Closed: 'closed',
  /** The server answered something that is not `{ok}` or `{error}`. */
  BadAnswer: 'bad_answer',
});

/** A refusal by the server (or by this client), with the server's code. */
export class ChatError extends Error {
  constructor(code, message, { event, retryAfterMs, oldestRoomSeq } = {}) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    this.event = event;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
    if (oldestRoomSeq !== undefined) this.oldestRoomSeq = oldestRoomSeq;
  }
}

/** No answer in time: `code` is always 'timeout'. */
export class TimeoutError extends ChatError {
  constructor(message, event) {
    super(ErrorCode.Timeout, message, { event });
    this.name = 'TimeoutError';
  }
}

/** A minimal event emitter (the same in Node and browsers). */
class Emitter {
  #listeners = new Map();
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return this;
  }
  off(event, fn) { this.#listeners.get(event)?.delete(fn); return this; }
  once(event, fn) {
    const wrapped = (...args) => { this.off(event, wrapped); fn(...args); };
    return this.on(event, wrapped);
  }
  emit(event, ...args) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) fn(...args);
  }
}

/** `connect_error` "rate_limited: ...; retry after 500 ms" -> ChatError. */
function refusal(error) {
  const message = String(error?.message ?? error);
  const code = /^([a-z_]+):/.exec(message)?.[1] ?? 'connect_error';
  const retry = /retry after (\d+) ms/.exec(message);
  return new ChatError(code, message, { event: 'connect', retryAfterMs: retry ? Number(retry[1]) : undefined });
}

/** One connection to a chatscale cluster; see README.md for the guarantees. */
export class ChatClient extends Emitter {
  #firstConnect = null;

  constructor(url, options = {}) {
    super();
    if (url !== undefined && typeof url !== 'string') throw new TypeError('ChatClient: url must be a string, or undefined for the page\'s origin');
    this.url = url;
    this.options = {
      ackTimeoutMs: 10_000, gapTimeoutMs: 3_000, connectAnswerMs: 5_000, retryDelayMs: 1_000, ...options,
    };
    /** @type {Map<string, Room>} */
    this.rooms = new Map();
    this.stats = { duplicatesDropped: 0, resumes: 0, gapFetches: 0, reconnects: 0, disconnects: [] };
    this.socket = null;
    this.closed = false;
    this.authExpired = false;
  }

  get connected() { return Boolean(this.socket?.connected); }

  /** Connects; resolves once connected, rejects with a ChatError if the server refuses. */
  connect() {
    if (this.closed) return Promise.reject(new ChatError(ErrorCode.Closed, 'the client was closed', { event: 'connect' }));
    if (this.#firstConnect) return this.#firstConnect;
    const { token, getToken, socketOptions = {}, io = defaultIo } = this.options;
    const auth = token !== undefined || getToken
      ? (cb) => Promise.resolve().then(() => (getToken ? getToken() : token)).then((t) => cb({ token: t }), () => cb({}))
      : undefined;
    const socket = io(this.url, { forceNew: true, ...socketOptions, ...(auth ? { auth } : {}) });
    this.socket = socket;
    let first = true;
    let unanswered;
    this.#firstConnect = new Promise((resolve, reject) => {
      // socket.io-client's `timeout` covers the Engine.IO handshake only: a
      // CONNECT that gets no answer is given up, and the transport closed.
      socket.io.on('open', () => {
        clearTimeout(unanswered);
        unanswered = setTimeout(() => {
          if (!socket.connected && !this.closed) socket.io.engine?.close();
        }, this.options.connectAnswerMs);
      });
      socket.io.on('reconnect_attempt', (attempt) => this.emit('reconnecting', { attempt }));
      socket.on('connect', () => {
        clearTimeout(unanswered);
        this.authExpired = false;
        this.emit('connected', { first, id: socket.id });
        if (first) { first = false; resolve(); return; }
        this.stats.reconnects++;
        for (const room of this.rooms.values()) room._resume();
      });
      socket.on('connect_error', (error) => {
        if (socket.active || this.closed) return; // a transport error: socket.io-client retries
        const refused = refusal(error);
        if (first) { this.close(); reject(refused); return; }
        // A refusal (a limit, a token) ends socket.io-client's reconnection: try again later.
        this.emit('reconnecting', { error: refused });
        setTimeout(() => this.closed || socket.connect(), refused.retryAfterMs ?? this.options.retryDelayMs);
      });
    });
    this.#firstConnect.catch(() => {}); // a connect() nobody awaits is not an unhandled rejection
    socket.on('disconnect', (reason) => {
      this.stats.disconnects.push(reason);
      for (const room of this.rooms.values()) room._disconnected();
      this.emit('disconnected', { reason, willReconnect: socket.active });
      // The server's DISCONNECT after `auth-expired`: with getToken, come back with a fresh token.
      if (reason === 'io server disconnect' && this.authExpired && getToken && !this.closed) socket.connect();
    });
    socket.on('server-draining', (info) => this.emit('moved', info ?? {}));
    socket.on('auth-expired', (info) => { this.authExpired = true; this.emit('auth-expired', info ?? {}); });
    socket.on('message', (m) => this.rooms.get(m?.room)?._receive('message', m));
    socket.on('ai-response-stream', (c) => this.rooms.get(c?.room)?._receive('chunk', c));
    return this.#firstConnect;
  }

  /** Emits `event` and resolves with its ack's `ok` value; rejects with a ChatError. */
  async request(event, payload, { timeoutMs = this.options.ackTimeoutMs } = {}) {
    if (!this.socket || this.closed) throw new ChatError(ErrorCode.Closed, `${event}: the client is not connected`, { event });
    let ack;
    try {
      ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new TimeoutError(`${event}: no answer within ${timeoutMs} ms`, event);
    }
    if (ack && typeof ack === 'object' && ack.error) {
      const { code, message, ...rest } = ack.error;
      throw new ChatError(code, `${event} refused: ${code}: ${message}`, { event, ...rest });
    }
    if (!ack || typeof ack !== 'object' || !('ok' in ack)) {
      throw new ChatError(ErrorCode.BadAnswer, `${event}: unexpected answer ${JSON.stringify(ack)}`, { event });
    }
    return ack.ok;
  }

  /** Joins `name` (connecting first if needed); resolves with the Room. */
  async join(name) {
    if (this.rooms.has(name)) return this.rooms.get(name)._ready();
    await this.connect();
    const room = new Room(this, name);
    this.rooms.set(name, room); // before the ack: events published while joining count
    try {
      room._joined((await this.request('join', { room: name })).roomSeq);
      return room;
    } catch (error) {
      this.rooms.delete(name);
      room._close();
      throw error;
    }
  }

  /** Closes the connection for good; unfinished answers end 'abandoned'. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const room of this.rooms.values()) room._close();
    this.rooms.clear();
    this.socket?.close();
  }
}

/** One joined room: ordered events, `send`, `ask`, `leave`. */
export class Room extends Emitter {
  constructor(client, name) {
    super();
    Object.assign(this, { client, name });
    this.joinedAt = null; // the room's roomSeq at the join
    this.next = null; // the next roomSeq to deliver; null until the join's ack
    this.joined = false; // the last join/resume was acknowledged on this connection
    this.pending = new Map(); // roomSeq -> [kind, data], waiting for their turn
    this.answers = new Map(); // streamId -> Answer
    this.gapTimer = null;
    this.resuming = false;
    this.epoch = 0; // counts disconnects: answers from an earlier connection are stale
    this.waiters = [];
    this.closedWith = null;
  }

  /** The highest roomSeq up to which every event was delivered. */
  get lastSeq() { return this.next === null ? null : this.next - 1; }

  _joined(roomSeq) {
    this.joinedAt = roomSeq;
    // Events published while we joined may arrive before the ack: they count.
    this.next = Math.min(roomSeq + 1, ...this.pending.keys());
    this.joined = true;
    // Delivered once the caller of join() holds the room and has added its listeners.
    setTimeout(() => this._flush(), 0);
  }

  _ok() {
    this.joined = true;
    for (const w of this.waiters.splice(0)) w.resolve(this);
    this._flush();
  }

  _ready() {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.joined) return Promise.resolve(this);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  _disconnected() {
    this.joined = false;
    this.resuming = false;
    this.epoch++;
    clearTimeout(this.gapTimer);
    this.gapTimer = null;
  }

  _receive(kind, data) {
    if (data.roomSeq == null) return this._deliver(kind, data); // live only: not in the log
    if ((this.next !== null && data.roomSeq < this.next) || this.pending.has(data.roomSeq)) {
      this.client.stats.duplicatesDropped++;
      return;
    }
    this.pending.set(data.roomSeq, [kind, data]);
    this._flush();
  }

  _flush() {
    if (this.next === null) return;
    while (this.pending.has(this.next)) {
      const [kind, data] = this.pending.get(this.next);
      this.pending.delete(this.next);
      this.next++;
      this._deliver(kind, data);
    }
    if (this.pending.size === 0) {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
    } else if (this.joined && !this.gapTimer && !this.resuming) {
      // A live gap: fetch what is missing from the log, on this connection.
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        if (this.pending.size === 0 || !this.joined) return;
        this.client.stats.gapFetches++;
        this._resume({ gap: true });
      }, this.client.options.gapTimeoutMs);
    }
  }

  /** Gives up on the events before `seq` (the log no longer holds them) and reports it. */
  _skipTo(seq, reason) {
    if (seq <= this.next) return;
    this.emit('gap', { from: this.next, to: seq - 1, reason });
    for (const a of this.answers.values()) a.lossy = true;
    for (const s of [...this.pending.keys()]) if (s < seq) this.pending.delete(s);
    this.next = seq;
  }

  _deliver(kind, data) {
    if (kind === 'message') { this.emit('message', data); return; }
    this._answer(data.streamId)._chunk(data);
  }

  _answer(streamId) {
    let answer = this.answers.get(streamId);
    if (!answer) {
      answer = new Answer(this, streamId);
      this.answers.set(streamId, answer);
      this.emit('answer', answer);
    }
    return answer;
  }

  /** Resumes after the last delivered event; on failure closes the transport, to retry. */
  async _resume({ gap = false } = {}) {
    if (this.next === null || this.closedWith || this.resuming) return;
    const { client, epoch } = this;
    const socket = client.socket;
    const after = this.next - 1;
    this.resuming = true;
    try {
      const ok = await client.request('resume', { room: this.name, after });
      if (epoch !== this.epoch || this.closedWith) return;
      this.resuming = false;
      client.stats.resumes++;
      if (ok.roomSeq < after) {
        // The room's numbering started again (the server lost its state).
        for (const seq of [...this.pending.keys()]) if (seq <= ok.roomSeq) this.pending.delete(seq);
        this.emit('reset', { roomSeq: ok.roomSeq });
        this.next = ok.roomSeq + 1;
      } else if (gap && this.pending.size && !this.pending.has(this.next)) {
        // The log did not hold the missing events either: give up on them.
        this._skipTo(Math.min(...this.pending.keys()), 'missing');
      }
      this.emit('resumed', { after, replayed: ok.replayed, roomSeq: ok.roomSeq, gap });
      this._ok();
    } catch (error) {
      if (epoch !== this.epoch || this.closedWith || client.closed) return;
      this.resuming = false;
      if (error.code === ErrorCode.ResumeTooOld && error.oldestRoomSeq !== undefined) {
        this._skipTo(error.oldestRoomSeq, 'too old for the room log');
        this._resume({ gap });
        return;
      }
      this.emit('resume-failed', error);
      // Not resumed on this connection: close its transport; the reconnect resumes again.
      if (socket.connected) socket.io.engine?.close();
    }
  }

  /** Sends a chat line (after the rejoin, if disconnected); resolves with the ack's ok value. */
  async send(text, { clientId } = {}) {
    await this._ready();
    return this.client.request('message', { room: this.name, text, ...(clientId ? { clientId } : {}) });
  }

  /** Asks the AI; resolves with the Answer, whose chunks the whole room sees. */
  async ask(prompt) {
    await this._ready();
    const ok = await this.client.request('ai-query', { room: this.name, prompt });
    const answer = this._answer(ok.streamId);
    answer.questionSeq = ok.roomSeq;
    answer.mine = true;
    return answer;
  }

  /** Leaves the room; its events stop. */
  async leave() {
    const connected = this.client.connected && this.joined;
    this.client.rooms.delete(this.name);
    this._close();
    if (connected) await this.client.request('leave', { room: this.name });
  }

  _close() {
    this.closedWith = new ChatError(ErrorCode.Closed, `room ${this.name} was left or its client closed`);
    clearTimeout(this.gapTimer);
    for (const w of this.waiters.splice(0)) w.reject(this.closedWith);
    for (const a of this.answers.values()) a._abandon();
  }
}

/** One AI answer, assembled from its chunks (delivered in roomSeq, hence seq, order). */
export class Answer extends Emitter {
  #finish;

  constructor(room, streamId) {
    super();
    Object.assign(this, { room, streamId, text: '', chunks: 0, finished: false, mine: false, lossy: false });
    this.questionSeq = null;
    this.partial = false; // joined mid-answer: its start is not coming
    this.outcome = undefined;
    this.deltas = [];
    this.wakeups = [];
    this.done = new Promise((resolve) => { this.#finish = resolve; });
  }

  _chunk(c) {
    if (this.finished) return;
    if (this.chunks === 0 && c.seq > 1) this.partial = true;
    this.chunks++;
    this.text += c.chunk;
    this.deltas.push(c.chunk);
    this.emit('chunk', { text: c.chunk, seq: c.seq, done: c.done, chunk: c });
    if (c.done) {
      const outcome = c.error === undefined ? 'complete' : c.error === 'interrupted' ? 'interrupted' : 'error';
      this._end(outcome, c.error);
    }
    for (const w of this.wakeups.splice(0)) w();
  }

  _abandon() {
    if (!this.finished) this._end('abandoned');
    for (const w of this.wakeups.splice(0)) w();
  }

  _end(outcome, error) {
    this.finished = true;
    this.outcome = outcome;
    const result = { text: this.text, outcome, partial: this.partial, lossy: this.lossy };
    if (error !== undefined) result.error = error;
    this.emit('done', result);
    this.#finish(result);
  }

  /** The text deltas, in order, until the answer ends. */
  async *[Symbol.asyncIterator]() {
    for (let i = 0; ; i++) {
      while (i >= this.deltas.length) {
        if (this.finished) return;
        await new Promise((wake) => this.wakeups.push(wake));
      }
      yield this.deltas[i];
    }
  }
}
