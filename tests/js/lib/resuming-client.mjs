// A chat client of one room from one source address, on @chatscale/client
// (clients/js), which follows the documented recipe (README, "Client
// recipe"): events in roomSeq order, duplicates dropped, a resume after the
// highest contiguous roomSeq on every reconnect. This wrapper keeps what the
// drain and shed tests and the autoscaler fleet read: every event by roomSeq,
// the counts, the disconnect reasons, when a client was told to move and when
// it was back, and a short history for failure messages.
import http from 'node:http';
import { ChatClient } from '@chatscale/client';

// A connection attempt whose Socket.IO CONNECT gets no answer within this is
// given up (its transport closed, so socket.io-client tries again): about 1
// lifecycle run in 20 saw a session whose CONNECT went unanswered while pods
// came and went. A first join not done within JOIN_MS fails `open()`.
const CONNECT_ANSWER_MS = 5_000;
const JOIN_MS = 15_000;

export class ResumingClient {
  /** With `cookies`, keeps the cookies its server sets (as a browser would, for cookie affinity). */
  constructor(url, room, localAddress, { cookies = false } = {}) {
    Object.assign(this, { url, room, localAddress, cookies });
    this.applied = new Map(); // roomSeq -> event
    this.joinedAt = null; // the room's roomSeq at the first join: owed every event after it
    this.received = 0;
    this.moved = null; // { at, reconnectedAt } when told to move
    this.closing = false;
    this.history = [];
    this.chat = null;
  }

  /** The socket.io-client socket (tests emit on it directly). */
  get socket() { return this.chat?.socket; }
  get duplicates() { return this.chat?.stats.duplicatesDropped ?? 0; }
  get resumes() { return this.chat?.stats.resumes ?? 0; }
  /** Every disconnect reason, in order. */
  get disconnects() { return this.chat?.stats.disconnects ?? []; }

  /** The highest roomSeq up to which this client holds every event it is owed. */
  get contiguous() {
    let n = this.joinedAt ?? 0;
    while (this.applied.has(n + 1)) n++;
    return n;
  }

  /** How many events it is owed up to `final` and does not hold. */
  missingUpTo(final) {
    let missing = 0;
    for (let seq = (this.joinedAt ?? 0) + 1; seq <= final; seq++) if (!this.applied.has(seq)) missing++;
    return missing;
  }

  take(event) {
    if (event.roomSeq == null) return;
    this.received++;
    this.applied.set(event.roomSeq, event);
  }

  /** Notes what happened to this client (the first 12 and last 12 things), for failure messages. */
  note(what) {
    this.history.push(`${Math.round(performance.now())} ${what}`);
    if (this.history.length > 24) this.history.splice(12, 1);
  }

  /**
   * Connects and joins the room; resolves once joined. A failure closes this
   * attempt's connection and rejects (the caller may try again).
   */
  async open() {
    this.chat?.close();
    // No keep-alive: after a drain, reconnections that reused an idle
    // connection were slower (nginx closes idle ones when short of
    // worker_connections) and now and then timed out their handshake.
    const agent = new http.Agent({ localAddress: this.localAddress, keepAlive: false });
    const chat = new ChatClient(this.url, {
      socketOptions: { agent, withCredentials: this.cookies, timeout: CONNECT_ANSWER_MS },
      connectAnswerMs: CONNECT_ANSWER_MS,
      ackTimeoutMs: 5_000,
    });
    this.chat = chat;
    this.note('join');
    chat.on('connected', ({ id }) => this.note(`connected ${id} (${chat.socket.io.engine?.id})`));
    chat.on('moved', ({ reconnectAfterMs }) => {
      this.note(`server-draining ${reconnectAfterMs}`);
      this.moved ??= { at: performance.now() };
    });
    chat.on('disconnected', ({ reason }) => this.note(`disconnect ${reason}`));
    chat.on('reconnecting', ({ attempt, error }) => this.note(error ? `refused ${error.message}` : `reconnect attempt ${attempt}`));
    let timer;
    try {
      const room = await Promise.race([
        chat.join(this.room),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`not joined within ${JOIN_MS} ms`)), JOIN_MS); }),
      ]);
      this.joinedAt ??= room.joinedAt;
      room.on('message', (m) => this.take(m));
      room.on('answer', (answer) => answer.on('chunk', ({ chunk }) => this.take(chunk)));
      room.on('resumed', ({ after, replayed }) => {
        this.note(`resumed after ${after} (${replayed} replayed)`);
        if (this.moved && !this.moved.reconnectedAt) this.moved.reconnectedAt = performance.now();
      });
      room.on('resume-failed', (error) => this.note(`resume failed: ${error.message}`));
      room.on('gap', ({ from, to, reason }) => this.note(`gap ${from}..${to}: ${reason}`));
      return { ok: { room: this.room, roomSeq: room.joinedAt } };
    } catch (error) {
      this.note(`join failed: ${error.message}`);
      chat.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  close() {
    this.closing = true;
    this.chat?.close();
  }
}
