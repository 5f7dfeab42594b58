// A chat client that follows the documented recipe (README, "Client
// recipe"): one stock socket.io-client socket with its own reconnection on;
// it applies room events in roomSeq order and drops duplicates, and on every
// `connect` after the first it resumes after the highest contiguous roomSeq
// it holds. `server-draining` (a drain or a shed) is advisory: the server
// closes the transport right after it and the socket reconnects by itself;
// the client only notes the move. Used by the drain and shed tests and the
// autoscaler fleet.
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect, ask } from './client.mjs';

// A connection attempt whose Socket.IO CONNECT gets no answer within this is
// given up (its transport closed, so socket.io-client tries again):
// socket.io-client's own `timeout` covers the Engine.IO handshake only, and
// about 1 lifecycle run in 20 saw a session whose CONNECT went unanswered
// while pods came and went.
const CONNECT_ANSWER_MS = 5_000;

/**
 * One client of one room, from one source address (`localAddress`). With
 * `cookies`, the client keeps the cookies its server sets (engine.io-client's
 * cookie jar in Node.js, `withCredentials`), as a browser would for a
 * cookie-affinity load balancer.
 */
export class ResumingClient {
  constructor(url, room, localAddress, { cookies = false } = {}) {
    Object.assign(this, { url, room, localAddress, cookies });
    this.applied = new Map(); // roomSeq -> event
    // The room's roomSeq when this client first joined: it is owed every
    // event after it (join replays nothing; a resume replays from the log).
    this.joinedAt = null;
    this.received = 0;
    this.duplicates = 0;
    this.resumes = 0;
    this.disconnects = []; // every disconnect reason, in order
    this.moved = null; // { at, reconnectedAt } when told to move
    this.closing = false;
    this.history = [];
  }

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
    if (this.applied.has(event.roomSeq)) this.duplicates++;
    else this.applied.set(event.roomSeq, event);
  }

  /** Notes what happened to this client (the first 12 and last 12 things), for failure messages. */
  note(what) {
    this.history.push(`${Math.round(performance.now())} ${what}`);
    if (this.history.length > 24) this.history.splice(12, 1);
  }

  /**
   * Connects and joins the room; resolves with the join's ack. A failure
   * closes this attempt's socket and rejects (the caller may try again).
   */
  async open() {
    // No keep-alive: after a drain, reconnections that reused an idle
    // connection were slower (nginx closes idle ones when short of
    // worker_connections, as with the drain test's 300 clients) and now and
    // then timed out their handshake.
    const agent = new http.Agent({ localAddress: this.localAddress, keepAlive: false });
    this.note('join');
    const socket = await connect(this.url, {
      agent, withCredentials: this.cookies, timeout: CONNECT_ANSWER_MS, reconnection: true,
    });
    this.note(`connected ${socket.io.engine.id}`);
    this.socket = socket;
    socket.on('message', (m) => this.take(m));
    socket.on('ai-response-stream', (c) => this.take(c));
    socket.on('server-draining', ({ reconnectAfterMs }) => {
      this.note(`server-draining ${reconnectAfterMs}`);
      this.moved ??= { at: performance.now() };
    });
    socket.on('disconnect', (reason) => {
      this.note(`disconnect ${reason}`);
      this.disconnects.push(reason);
    });
    socket.io.on('open', () => {
      clearTimeout(this.unanswered);
      this.unanswered = setTimeout(() => {
        if (socket.connected || this.closing) return;
        this.note(`no CONNECT answer within ${CONNECT_ANSWER_MS} ms: closing the transport`);
        socket.io.engine?.close();
      }, CONNECT_ANSWER_MS);
    });
    socket.on('connect', () => {
      clearTimeout(this.unanswered);
      this.resume(socket);
    });
    socket.on('connect_error', (error) => {
      this.note(`connect_error ${error.message}`);
      // A CONNECT the server refused (a limit, a token) ends socket.io-client's
      // reconnection: try again later.
      if (!socket.active && !this.closing) setTimeout(() => this.closing || socket.connect(), 1_000);
    });
    try {
      const ack = await ask(socket, 'join', { room: this.room });
      assert.ok(ack.ok, JSON.stringify(ack));
      this.joinedAt ??= ack.ok.roomSeq;
      return ack;
    } catch (error) {
      // This attempt failed: its socket must not reconnect later.
      this.note(`join failed: ${error.message}`);
      socket.close();
      throw error;
    }
  }

  /** After a reconnect: resume after the highest contiguous roomSeq held. */
  async resume(socket) {
    if (this.joinedAt === null || this.closing) return;
    const after = this.contiguous;
    this.note(`connected ${socket.io.engine.id}, resume after ${after}`);
    try {
      const ack = await ask(socket, 'resume', { room: this.room, after });
      assert.ok(ack.ok, JSON.stringify(ack));
      this.resumes++;
      if (this.moved && !this.moved.reconnectedAt) this.moved.reconnectedAt = performance.now();
    } catch (error) {
      // Not resumed on this connection (refused, or no answer): close its
      // transport, so that socket.io-client reconnects and resumes again.
      this.note(`resume failed: ${error.message}`);
      if (socket.connected) socket.io.engine?.close();
    }
  }

  close() {
    this.closing = true;
    clearTimeout(this.unanswered);
    this.socket?.close();
  }
}
