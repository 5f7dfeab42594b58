// A child process that floods a chat-server the way an abusive client would:
// it connects, joins a room, sends messages at `rate` a second (far past its
// budget) without waiting for acks, and when it is disconnected (or refused)
// connects again at once. It reports what the server answered over IPC; the
// test tells it when to stop. Run it niced: an attacker's CPU is not on the
// server's machine, and here all share two cores.
import { io } from 'socket.io-client';

const { url, room, auth, rate = 5000 } = JSON.parse(process.argv[2]);
const TICK_MS = 10;
const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
const stats = { sent: 0, accepted: 0, rateLimited: 0, otherErrors: 0, disconnects: 0, refusedHandshakes: 0, errorEvents: 0 };
let stopping = false;
process.on('message', (m) => { if (m === 'stop') stopping = true; });
process.on('disconnect', () => { stopping = true; });
const report = setInterval(() => process.send({ stats }), 100);

const tick = () => new Promise((r) => setTimeout(r, TICK_MS));

async function session() {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ['websocket'], auth });
  const connected = await new Promise((resolve) => {
    socket.once('connect', () => resolve(true));
    socket.once('connect_error', () => resolve(false));
  });
  if (!connected) {
    stats.refusedHandshakes++;
    socket.close();
    await tick();
    return;
  }
  let open = true;
  socket.on('error', () => { stats.errorEvents++; });
  socket.once('disconnect', () => { open = false; stats.disconnects++; });
  socket.emit('join', { room }, () => {});
  while (open && !stopping) {
    for (let i = 0; i < perTick && open; i++) {
      stats.sent++;
      socket.emit('message', { room, text: `flood ${stats.sent}` }, (ack) => {
        if (ack?.ok) stats.accepted++;
        else if (ack?.error?.code === 'rate_limited') stats.rateLimited++;
        else stats.otherErrors++;
      });
    }
    await tick();
  }
  socket.close();
}

while (!stopping) await session();
clearInterval(report);
process.send({ stats, done: true }, () => process.exit(0));
