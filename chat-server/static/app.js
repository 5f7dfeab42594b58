// Browser side of the demo page: talks the chat protocol over Socket.IO and
// renders one room's transcript in roomSeq order, with AI answers growing in
// place as their chunks stream in. All user data goes through textContent.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ACK_TIMEOUT_MS = 10000;
  // How long to wait for a missing roomSeq before giving up on it.
  const GAP_TIMEOUT_MS = 3000;

  // With auth required, the page sends the JWT given in its URL fragment
  // (/#token=...): fragments never reach the server's access logs.
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const socket = io({ reconnectionDelayMax: 5000, auth: (cb) => cb(token ? { token } : {}) });
  socket.on('auth-expired', () => system('The token expired: open the page with a fresh #token=...'));
  const myIds = new Set(); // every socket id this page has had (they change on reconnect)
  let clientCounter = 0;
  const myClientIds = new Set();

  // State of the room we are in; reset on every join of a new room.
  let room = null;     // room name, or null
  let joined = false;  // the last join/resume of `room` was acknowledged
  let nextSeq = null;  // next roomSeq to render; null until the first join ack
  let pending = new Map(); // roomSeq -> {type, data}, waiting for their turn
  let streams = new Map(); // streamId -> {el, textEl, next, parts, lossy, done}
  let gapTimer = null;

  // ---- connection state -------------------------------------------------

  function setState(state, detail) {
    const el = $('state');
    el.textContent = state;
    el.className = 'state ' + state;
    el.title = detail || '';
  }

  socket.on('connect', () => {
    myIds.add(socket.id);
    setState('connected');
    // Back after a reconnect: catch up, unless the first join never got its answer.
    if (room && nextSeq !== null) resume(room);
    else if (room) join(room);
  });
  // A draining or shedding server moves us elsewhere: it closes the transport
  // right after `server-draining`, and Socket.IO reconnects by itself.
  socket.on('server-draining', () => system('This server is moving us to another one…'));
  socket.on('disconnect', (reason) => {
    joined = false;
    clearTimeout(gapTimer); // the resume will fetch what is missing
    setState('disconnected', reason);
    // After a server's DISCONNECT (an expired token) Socket.IO does not reconnect.
    system('Disconnected (' + reason + ')' + (socket.active ? '; reconnecting…' : '.'));
  });
  socket.on('connect_error', (err) => setState('disconnected', err.message));
  socket.io.on('reconnect_attempt', (n) => setState('connecting', 'attempt ' + n));

  // ---- acks -------------------------------------------------------------

  /**
   * Emits `event` and calls `onOk` with the ack's `ok` value. Error acks go to
   * `onError` if given and it returns true, else they are shown.
   */
  function request(event, payload, onOk, onError) {
    socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
      if (err) return showError(event + ': no answer from the server (' + err.message + ')');
      if (ack && ack.error && onError && onError(ack.error)) return;
      if (ack && ack.error) return showError(event + ' refused: ' + ack.error.code + ': ' + ack.error.message);
      if (!ack || !('ok' in ack)) return showError(event + ': unexpected answer');
      onOk(ack.ok);
    });
  }

  // ---- transcript -------------------------------------------------------

  function addLine(className, parts) {
    const log = $('log');
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const line = document.createElement('div');
    line.className = 'line ' + className;
    for (const [cls, text] of parts) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      line.append(span);
    }
    log.append(line);
    if (stick) log.scrollTop = log.scrollHeight;
    return line;
  }

  function system(text) { addLine('system', [['text', text]]); }
  function showError(text) { addLine('system error', [['text', text]]); }

  function time(ts) {
    return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function who(msg) {
    const mine = myIds.has(msg.from) || (msg.clientId && myClientIds.has(msg.clientId));
    return mine ? 'you' : 'user ' + String(msg.from).slice(0, 6);
  }

  function renderMessage(msg) {
    const sender = who(msg);
    const line = addLine(msg.kind === 'ai-prompt' ? 'prompt' : 'chat', [
      ['ts', time(msg.ts)],
      ['from', sender + (msg.kind === 'ai-prompt' ? ' asked the AI:' : ':')],
      ['text', msg.text],
    ]);
    if (sender === 'you') line.classList.add('mine');
  }

  function renderChunk(c) {
    let s = streams.get(c.streamId);
    if (!s) {
      const el = addLine('answer', [['ts', time(c.ts)], ['from', 'AI:'], ['answer-text', ''], ['status', 'streaming…']]);
      el.dataset.streamId = c.streamId;
      // Starting after seq 1 means we joined mid-answer: its start is not coming.
      s = { el, textEl: el.querySelector('.answer-text'), next: c.seq, parts: new Map(), lossy: false, done: false };
      if (c.seq > 1) s.textEl.textContent = '… ';
      streams.set(c.streamId, s);
    }
    if (s.done || c.seq < s.next || s.parts.has(c.seq)) return; // duplicate
    s.parts.set(c.seq, c);
    if (s.lossy && !s.parts.has(s.next)) { // chunks lost in a roomSeq gap
      s.next = Math.min(...s.parts.keys());
      s.textEl.textContent += ' […] ';
    }
    const log = $('log');
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    // Render only the contiguous prefix.
    while (s.parts.has(s.next)) {
      const part = s.parts.get(s.next);
      s.parts.delete(s.next);
      s.next += 1;
      s.textEl.textContent += part.chunk;
      if (part.done) {
        s.done = true;
        s.parts.clear();
        s.el.classList.add('done');
        const status = s.el.querySelector('.status');
        if (part.error) {
          s.el.classList.add('failed');
          status.textContent = 'ended early: ' + part.error;
        } else {
          status.textContent = 'complete';
        }
        break;
      }
    }
    if (stick) log.scrollTop = log.scrollHeight;
  }

  // ---- ordering by roomSeq ----------------------------------------------

  function render(type, data) {
    if (type === 'message') renderMessage(data); else renderChunk(data);
  }

  function receive(type, data) {
    if (!room || data.room !== room) return;
    if (data.roomSeq == null) return render(type, data); // live-only: the server could not log it
    if (nextSeq !== null && data.roomSeq < nextSeq) return; // duplicate
    if (pending.has(data.roomSeq)) return; // duplicate
    pending.set(data.roomSeq, { type, data });
    flush();
  }

  function flush() {
    if (nextSeq === null) return; // waiting for the join ack
    while (pending.has(nextSeq)) {
      const { type, data } = pending.get(nextSeq);
      pending.delete(nextSeq);
      nextSeq += 1;
      render(type, data);
    }
    clearTimeout(gapTimer);
    gapTimer = null;
    // While (re)joining, the join or resume ack decides what is missing.
    if (pending.size > 0 && joined) gapTimer = setTimeout(() => skipTo(Math.min(...pending.keys()), 'did not arrive'), GAP_TIMEOUT_MS);
  }

  /** Gives up on events before `seq` and renders on from there. */
  function skipTo(seq, why) {
    if (seq <= nextSeq) return flush();
    system((seq - nextSeq) + ' room event(s) ' + why + '.');
    for (const s of streams.values()) if (!s.done) s.lossy = true;
    nextSeq = seq;
    flush();
  }

  socket.on('message', (msg) => receive('message', msg));
  socket.on('ai-response-stream', (chunk) => receive('chunk', chunk));

  // ---- actions ----------------------------------------------------------

  function join(name) {
    request('join', { room: name }, (ok) => {
      if (name !== room || nextSeq !== null) return; // the user moved on, or a stale ack
      joined = true;
      $('current-room').textContent = 'in room ' + ok.room;
      // Events that arrived before the ack (published while we joined) still count.
      nextSeq = Math.min(ok.roomSeq + 1, ...pending.keys());
      system('Joined ' + ok.room + '.');
      flush();
      $('text').focus();
    });
  }

  /** After a reconnect: rejoin and get every event after the last one rendered. */
  function resume(name, retry = false) {
    const after = nextSeq - 1;
    request('resume', { room: name, after }, (ok) => {
      if (name !== room) return; // the user moved on meanwhile
      joined = true;
      $('current-room').textContent = 'in room ' + ok.room;
      if (ok.roomSeq < after) {
        // The room's sequence went backwards: the server lost its state (e.g. a restart
        // without shared storage). Start counting afresh from here.
        system('Rejoined ' + ok.room + '; the server restarted and the room started over.');
        for (const s of streams.values()) if (!s.done) s.lossy = true;
        for (const seq of [...pending.keys()]) if (seq <= ok.roomSeq) pending.delete(seq);
        nextSeq = ok.roomSeq + 1;
      } else {
        // The replay came before this ack; live events carry on from here.
        system('Rejoined ' + ok.room + (ok.replayed ? '; caught up on ' + ok.replayed + ' room event(s).' : '.'));
      }
      flush();
    }, (error) => {
      if (name !== room) return true;
      if (error.code === 'resume_too_old') {
        skipTo(error.oldestRoomSeq, 'were missed while disconnected; some history is no longer available');
        resume(name);
        return true;
      }
      if (error.code === 'unavailable') { // shared state is down: keep trying
        setTimeout(() => { if (name === room && !joined && socket.connected) resume(name, true); }, 2000);
      }
      return retry; // show the error once
    });
  }

  $('room-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('room').value.trim() || 'lobby';
    if (name === room && joined) return;
    if (room && room !== name) request('leave', { room }, () => {});
    room = name;
    joined = false;
    nextSeq = null;
    pending = new Map();
    streams = new Map();
    clearTimeout(gapTimer);
    $('log').replaceChildren();
    $('current-room').textContent = 'joining ' + name + '…';
    join(name);
  });

  $('message-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value;
    if (!text.trim()) return;
    if (!room) return showError('Join a room first.');
    // Sent before the rejoin's ack, it would be refused (not_joined).
    if (!joined) return showError('Not in the room yet; try again in a moment.');
    const clientId = 'c' + Date.now().toString(36) + '-' + (++clientCounter);
    myClientIds.add(clientId);
    request('message', { room, text, clientId }, () => { $('text').value = ''; });
  });

  $('ask-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const prompt = $('prompt').value;
    if (!prompt.trim()) return;
    if (!room) return showError('Join a room first.');
    if (!joined) return showError('Not in the room yet; try again in a moment.');
    request('ai-query', { room, prompt }, () => { $('prompt').value = ''; });
  });
})();
