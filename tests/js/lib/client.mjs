// Small helpers around the official socket.io-client for the tests.
import { io } from 'socket.io-client';

function connectOnce(url, options) {
  const socket = io(url, { forceNew: true, reconnection: false, ...options });
  return new Promise((resolve, reject) => {
    let unanswered;
    const fail = (error) => {
      clearTimeout(unanswered);
      socket.off('connect', connected);
      socket.off('disconnect', closedEarly);
      socket.close();
      reject(error);
    };
    const connected = () => {
      clearTimeout(unanswered);
      socket.off('connect_error', fail);
      socket.off('disconnect', closedEarly);
      resolve(socket);
    };
    // socket.io-client's `timeout` covers the Engine.IO handshake only: a
    // session whose Socket.IO CONNECT goes unanswered would wait for ever.
    if (options.timeout) {
      unanswered = setTimeout(() => fail(Object.assign(
        new Error(`no CONNECT answer within ${options.timeout} ms`), { type: 'TransportError' },
      )), options.timeout);
    }
    // A transport that closes after the handshake but before the Socket.IO
    // CONNECT answer (its server went away) ends in `disconnect`, not in
    // `connect_error`: without this the promise would never settle.
    const closedEarly = (reason) => fail(Object.assign(
      new Error(`closed before the CONNECT answer: ${reason}`), { type: 'TransportError' },
    ));
    socket.once('connect', connected);
    socket.once('connect_error', fail);
    socket.once('disconnect', closedEarly);
  });
}

/**
 * Connects a new client (never shares a Manager) and resolves once connected.
 * Tests turn the client's automatic reconnection off, so that a refusal fails
 * at once; a transport failure (an HTTP request or socket that broke, seen
 * once in many full runs on a loaded machine) is what that reconnection would
 * absorb, so it gets one more try, logged. A refusal by the server (auth,
 * limits, origin) fails the same way twice.
 */
export async function connect(url, options = {}) {
  try {
    return await connectOnce(url, options);
  } catch (error) {
    if (error.type !== 'TransportError') throw error;
    console.log(`connect: transport error (${error.message}, ${JSON.stringify(error.description?.message ?? error.description)}); trying once more`);
    return connectOnce(url, options);
  }
}

/** Emits `event` and resolves with the server's ack. */
export function ask(socket, event, ...args) {
  return socket.timeout(5_000).emitWithAck(event, ...args);
}

/** Resolves with the first `event` payload for which `predicate` holds. */
export function next(socket, event, predicate = () => true, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`no ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    function listener(payload) {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    }
    socket.on(event, listener);
  });
}

/**
 * Records every room event a socket receives, in arrival order, and resolves
 * `done(streamId)` once that stream's `done: true` chunk has arrived.
 */
export function record(socket) {
  const messages = [];
  const chunks = [];
  const waiters = [];
  socket.on('message', (m) => messages.push({ ...m, at: performance.now() }));
  socket.on('ai-response-stream', (c) => {
    chunks.push({ ...c, at: performance.now() });
    for (const w of waiters) if (c.done && c.streamId === w.streamId) w.resolve();
  });
  return {
    messages,
    chunks,
    stream: (streamId) => chunks.filter((c) => c.streamId === streamId),
    done(streamId, timeoutMs = 20_000) {
      if (chunks.some((c) => c.done && c.streamId === streamId)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stream ${streamId} not done`)), timeoutMs);
        waiters.push({ streamId, resolve: () => { clearTimeout(timer); resolve(); } });
      });
    },
  };
}
