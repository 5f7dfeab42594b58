// A chat client that follows the documented recipe (README, "Drain"): it
// applies room events in roomSeq order and drops duplicates; on
// `server-draining` or an unexpected disconnect it reconnects after the
// advised delay (or a backoff) and resumes after the highest contiguous
// roomSeq it holds. Used by the drain test and the autoscaler fleet.
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect, ask } from './client.mjs';

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

  async open(resume) {
    const agent = new http.Agent({ localAddress: this.localAddress, keepAlive: true });
    this.note(resume ? `resume after ${this.contiguous}` : 'join');
    // A connection attempt that gets no CONNECT answer within 5 s is given
    // up and tried again (connect() times out the CONNECT answer too, which
    // socket.io-client's own timeout does not): seen in about 1 lifecycle run
    // in 20, a session whose CONNECT went unanswered while pods came and went.
    const socket = await connect(this.url, { agent, withCredentials: this.cookies, timeout: 5_000 });
    this.note(`connected ${socket.io.engine.id}`);
    this.socket = socket;
    socket.on('message', (m) => this.take(m));
    socket.on('ai-response-stream', (c) => this.take(c));
    socket.on('server-draining', ({ reconnectAfterMs }) => {
      this.note(`server-draining ${reconnectAfterMs}`);
      this.advisedDelay = reconnectAfterMs;
      this.moved ??= { at: performance.now() };
    });
    const reconnect = (reason) => {
      this.note(`disconnect ${reason}`);
      if (this.closing) return;
      const delay = this.advisedDelay ?? 500;
      this.advisedDelay = undefined;
      setTimeout(() => this.reopen(), delay);
    };
    socket.on('disconnect', reconnect);
    try {
      const ack = resume
        ? await ask(socket, 'resume', { room: this.room, after: this.contiguous })
        : await ask(socket, 'join', { room: this.room });
      assert.ok(ack.ok, JSON.stringify(ack));
      if (!resume) this.joinedAt ??= ack.ok.roomSeq;
      return ack;
    } catch (error) {
      // This attempt failed: its socket must not start another reconnect later.
      socket.off('disconnect', reconnect);
      socket.close();
      throw error;
    }
  }

  async reopen(attempt = 1) {
    try {
      await this.open(true);
      if (this.moved && !this.moved.reconnectedAt) this.moved.reconnectedAt = performance.now();
    } catch (error) {
      this.note(`attempt ${attempt} failed: ${error.message}`);
      setTimeout(() => this.reopen(attempt + 1), Math.min(2000, 100 * 2 ** attempt));
    }
  }

  close() {
    this.closing = true;
    this.socket?.close();
  }
}

