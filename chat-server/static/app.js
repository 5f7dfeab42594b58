// Browser side of the demo page, on @chatscale/client (served as
// /chatscale-client.js; socket.io-client through the page's import map): it
// renders one room's transcript in roomSeq order, each event once, with AI
// answers growing in place as their chunks stream in. The library resumes
// after reconnects and drains; this file only renders. All user data goes
// through textContent.
import { ChatClient } from '/chatscale-client.js';

const $ = (id) => document.getElementById(id);

// With auth required, the page sends the JWT given in its URL fragment
// (/#token=...): fragments never reach the server's access logs.
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const chat = new ChatClient(undefined, {
  ...(token ? { token } : {}),
  socketOptions: { reconnectionDelayMax: 5000 },
  ackTimeoutMs: 10000,
  gapTimeoutMs: 3000,
});
const myIds = new Set(); // every socket id this page has had (they change on reconnect)
const myClientIds = new Set();
let clientCounter = 0;
let room = null; // the Room we are in (or joining: `joining` names it)
let joining = null;

// ---- connection state -------------------------------------------------

function setState(state, detail) {
  const el = $('state');
  el.textContent = state;
  el.className = 'state ' + state;
  el.title = detail || '';
}

chat.on('connected', ({ id }) => { myIds.add(id); setState('connected'); });
chat.on('reconnecting', ({ attempt, error }) => (error
  ? setState('disconnected', error.message)
  : setState('connecting', 'attempt ' + attempt)));
// A draining or shedding server moves us elsewhere: it closes the transport
// right after `server-draining`, and the client reconnects and resumes.
chat.on('moved', () => system('This server is moving us to another one…'));
chat.on('auth-expired', () => system('The token expired: open the page with a fresh #token=...'));
chat.on('disconnected', ({ reason, willReconnect }) => {
  setState('disconnected', reason);
  // After a server's DISCONNECT (an expired token) there is no reconnection.
  system('Disconnected (' + reason + ')' + (willReconnect ? '; reconnecting…' : '.'));
});
chat.connect().catch((error) => { setState('disconnected', error.message); showError(error.message); });

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

/** An answer's block appears with its first chunk and grows with each one. */
function renderAnswer(answer) {
  let el = null;
  let textEl = null;
  answer.on('chunk', ({ text, chunk }) => {
    const log = $('log');
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    if (!el) {
      el = addLine('answer', [['ts', time(chunk.ts)], ['from', 'AI:'], ['answer-text', ''], ['status', 'streaming…']]);
      el.dataset.streamId = answer.streamId;
      textEl = el.querySelector('.answer-text');
      // Starting after seq 1 means we joined mid-answer: its start is not coming.
      if (chunk.seq > 1) textEl.textContent = '… ';
    }
    if (answer.gapSeen) { textEl.textContent += ' […] '; answer.gapSeen = false; } // chunks lost in a gap
    textEl.textContent += text;
    if (stick) log.scrollTop = log.scrollHeight;
  });
  answer.on('done', ({ outcome, error }) => {
    if (!el) return;
    el.classList.add('done');
    const status = el.querySelector('.status');
    if (outcome === 'complete') {
      status.textContent = 'complete';
    } else {
      el.classList.add('failed');
      status.textContent = 'ended early: ' + (error ?? outcome);
    }
  });
}

// ---- actions ----------------------------------------------------------

function enter(r) {
  room = r;
  $('current-room').textContent = 'in room ' + r.name;
  system('Joined ' + r.name + '.');
  r.on('message', renderMessage);
  r.on('answer', renderAnswer);
  r.on('resumed', ({ replayed, gap }) => {
    if (gap || room !== r) return;
    $('current-room').textContent = 'in room ' + r.name;
    system('Rejoined ' + r.name + (replayed ? '; caught up on ' + replayed + ' room event(s).' : '.'));
  });
  r.on('reset', () => system('Rejoined ' + r.name + '; the server restarted and the room started over.'));
  r.on('gap', ({ from, to, reason }) => {
    const why = reason === 'missing' ? 'did not arrive'
      : 'were missed while disconnected; some history is no longer available';
    system((to - from + 1) + ' room event(s) ' + why + '.');
    for (const a of r.answers.values()) if (!a.finished) a.gapSeen = true;
  });
  $('text').focus();
}

$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('room').value.trim() || 'lobby';
  if ((room && name === room.name) || name === joining) return;
  const previous = room;
  room = null;
  joining = name;
  if (previous) previous.leave().catch(() => {});
  $('log').replaceChildren();
  $('current-room').textContent = 'joining ' + name + '…';
  chat.join(name).then((r) => {
    if (joining !== name) { r.leave().catch(() => {}); return; } // the user moved on meanwhile
    joining = null;
    enter(r);
  }, (error) => {
    if (joining !== name) return;
    joining = null;
    $('current-room').textContent = 'not in a room';
    showError(error.message);
  });
});

$('message-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value;
  if (!text.trim()) return;
  if (!room) return showError('Join a room first.');
  const clientId = 'c' + Date.now().toString(36) + '-' + (++clientCounter);
  myClientIds.add(clientId);
  // While reconnecting, the library sends it once the room is resumed.
  room.send(text, { clientId }).then(() => { $('text').value = ''; }, (error) => showError(error.message));
});

$('ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const prompt = $('prompt').value;
  if (!prompt.trim()) return;
  if (!room) return showError('Join a room first.');
  room.ask(prompt).then(() => { $('prompt').value = ''; }, (error) => showError(error.message));
});
