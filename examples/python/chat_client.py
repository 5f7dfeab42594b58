"""A chatscale client in Python: the README's client recipe with python-socketio.

It connects with a token, joins rooms, sends messages, asks the AI, and
applies every room event exactly once, in roomSeq order, across disconnects,
drains and server changes: on each reconnect it resumes every room after its
highest contiguous roomSeq, holds back events that arrive early and drops the
ones it already has.

    python chat_client.py --url http://localhost:3000 --room lobby [--token JWT]

Lines typed on stdin are sent to the room; "/ai QUESTION" asks the AI.
"""

import argparse
import asyncio
import logging
import os
import random
import sys
from collections import OrderedDict

import socketio

log = logging.getLogger("chat_client")


class ChatError(Exception):
    """An error ack `{error: {code, message, ...}}`, or a refused connection."""

    def __init__(self, code, message, details=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details = code, message, details or {}


class Room:
    """The client rule for one room: apply in roomSeq order, once each."""

    def __init__(self, apply):
        self.apply = apply  # apply(event_name, data), called in roomSeq order
        self.contiguous = None  # highest roomSeq applied with none missing; None until joined
        self.pending = {}  # roomSeq -> (event_name, data) that arrived early
        self.duplicates = 0

    def take(self, event, data):
        seq = data.get("roomSeq")
        if seq is None:  # Redis was down: live only, not sequenced
            return self.apply(event, data)
        if (self.contiguous is not None and seq <= self.contiguous) or seq in self.pending:
            self.duplicates += 1
            return
        self.pending[seq] = (event, data)
        self.flush()

    def start_at(self, seq):
        """Owed every event after `seq` (a join's roomSeq, or a resume's new floor)."""
        self.contiguous = seq if self.contiguous is None else max(self.contiguous, seq)
        for old in [s for s in self.pending if s <= self.contiguous]:
            del self.pending[old]
        self.flush()

    def flush(self):
        while self.contiguous is not None and self.contiguous + 1 in self.pending:
            self.contiguous += 1
            self.apply(*self.pending.pop(self.contiguous))


class ChatClient:
    """One Socket.IO connection with python-socketio's reconnection on.

    `on_event(room, event_name, data)` sees every room event in roomSeq order;
    `on_answer(room, stream_id, text, error)` sees every finished AI answer.
    """

    def __init__(self, url, token=None, *, on_event=None, on_answer=None, ack_timeout=10.0):
        self.url, self.token, self.ack_timeout = url, token, ack_timeout
        self.on_event, self.on_answer = on_event, on_answer
        self.rooms = {}
        self.streams = OrderedDict()  # streamId -> {seq: chunk}, plus "done"/"error"
        self.waiters = {}  # streamId -> futures of the answer's text
        self.stats = {"connects": 0, "resumes": 0, "draining": 0}
        self.disconnects = []  # every disconnect reason, in order
        self.ready = asyncio.Event()  # connected and every room resumed
        self.closed_reason = None
        self._move_after = None  # seconds: the server said it will close us, or resume failed
        self._closing = False
        self._connect_error = None
        self._tasks = set()
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=5)
        on = self.sio.on
        on("connect", self._on_connect)
        on("disconnect", self._on_disconnect)
        on("connect_error", self._on_connect_error)
        on("server-draining", self._on_server_draining)
        for event in ("message", "ai-response-stream"):
            on(event, lambda data, event=event: self._on_room_event(event, data))
        for event in ("auth-expired", "error"):  # the server is about to send a Socket.IO DISCONNECT
            on(event, lambda data, event=event: self._on_ended(event, data))

    # --- the API -------------------------------------------------------------------------
    async def connect(self):
        """Connects; a refusal raises ChatError (e.g. `unauthorized: token expired`)."""
        self._connect_error = self.closed_reason = None
        try:
            await self.sio.connect(self.url, auth={"token": self.token} if self.token else None,
                                   wait_timeout=self.ack_timeout)
        except socketio.exceptions.ConnectionError as error:
            if self._connect_error:  # the server's reason, "code: message"
                code, _, message = self._connect_error.partition(": ")
                raise ChatError(code, message) from error
            raise ChatError("connect_failed", str(error)) from error

    async def join(self, room):
        """Joins `room`; returns its roomSeq at the join (owed every event after it)."""
        self.rooms.setdefault(room, Room(lambda event, data: self._apply(room, event, data)))
        try:
            ok = await self._call("join", {"room": room})
        except BaseException:
            if self.rooms[room].contiguous is None:
                del self.rooms[room]
            raise
        self.rooms[room].start_at(ok["roomSeq"])
        return ok["roomSeq"]

    async def send(self, room, text, client_id=None):
        """Sends a chat line; returns the ack `{id, roomSeq}`."""
        data = {"room": room, "text": text, **({"clientId": client_id} if client_id else {})}
        return await self._call("message", data)

    async def ask(self, room, prompt, timeout=120.0):
        """Asks the AI; returns the whole answer, its chunks joined in seq order."""
        stream_id = (await self._call("ai-query", {"room": room, "prompt": prompt}))["streamId"]
        return await self.answer(stream_id, timeout)

    async def answer(self, stream_id, timeout=120.0):
        """Waits for the answer `stream_id` (asked by anyone in a joined room).

        An answer that ended early (`error` on its last chunk, e.g. "interrupted")
        raises ChatError(error, ..., {"text": what came}).
        """
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(stream_id, []).append(waiter)
        self._finish(None, stream_id)  # it may be complete already
        return await asyncio.wait_for(waiter, timeout)

    async def close(self):
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await self.sio.disconnect()

    # --- events ----------------------------------------------------------------------------
    async def _call(self, event, data):
        """Emits once the connection is resumed; an error ack raises ChatError."""
        if self.closed_reason:  # the server ended the session (auth-expired): connect again with a fresh token
            raise ChatError("closed", self.closed_reason)
        await asyncio.wait_for(self.ready.wait(), self.ack_timeout)
        return self._ok(await self.sio.call(event, data, timeout=self.ack_timeout))

    @staticmethod
    def _ok(ack):
        if isinstance(ack, dict) and "ok" in ack:
            return ack["ok"]
        error = (ack or {}).get("error") if isinstance(ack, dict) else None
        if not isinstance(error, dict):
            raise ChatError("bad_ack", f"unexpected ack {ack!r}")
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        raise ChatError(error.get("code"), error.get("message", ""), details)

    def _on_room_event(self, event, data):
        room = self.rooms.get(data.get("room"))
        if room is not None:  # rooms we left or never joined are ignored
            room.take(event, data)

    def _apply(self, room, event, data):
        if self.on_event:
            self.on_event(room, event, data)
        if event == "ai-response-stream":
            stream = self.streams.setdefault(data["streamId"], {})
            stream[data["seq"]] = data["chunk"]
            if data["done"]:
                stream["done"], stream["error"] = data["seq"], data.get("error")
            self._finish(room, data["streamId"])
            while len(self.streams) > 256:  # forget the oldest answers nobody waits for
                self.streams.popitem(last=False)

    def _finish(self, room, stream_id):
        stream = self.streams.get(stream_id, {})
        if "done" not in stream or any(s not in stream for s in range(1, stream["done"] + 1)):
            return
        text, error = "".join(stream[s] for s in range(1, stream["done"] + 1)), stream["error"]
        if room is not None and self.on_answer:
            self.on_answer(room, stream_id, text, error)
        for waiter in self.waiters.pop(stream_id, []):
            if waiter.done():
                continue
            if error:
                waiter.set_exception(ChatError(error, "the answer ended early", {"text": text}))
            else:
                waiter.set_result(text)

    def _on_connect(self):
        self.stats["connects"] += 1
        self._move_after = None
        # Every room is resumed on every connect (the first has none yet).
        self._spawn(self._resume_all(self.stats["connects"]))

    async def _resume_all(self, connection):
        try:
            for name, room in list(self.rooms.items()):
                while True:
                    ack = await self.sio.call("resume", {"room": name, "after": room.contiguous},
                                              timeout=self.ack_timeout)
                    try:
                        self._ok(ack)
                        break
                    except ChatError as error:
                        if error.code != "resume_too_old":
                            raise
                        log.warning("%s: history before roomSeq %s is gone", name, error.details["oldestRoomSeq"])
                        room.start_at(error.details["oldestRoomSeq"] - 1)
            if self.rooms:
                self.stats["resumes"] += 1
            self.ready.set()
        except (ChatError, socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError) as error:
            # Not resumed on this connection: drop it and reconnect, then resume again.
            if connection == self.stats["connects"] and self.sio.connected:
                log.warning("resume failed (%s); reconnecting", error)
                self._move_after = 0.5
                await self.sio.disconnect()

    def _on_server_draining(self, data):
        # Advisory: the server closes this transport right after it.
        self.stats["draining"] += 1
        self.ready.clear()
        self._move_after = data.get("reconnectAfterMs", 0) / 1000

    def _on_disconnect(self, reason=None):
        self.ready.clear()
        self.disconnects.append(reason)
        if self._closing:
            return
        if reason == self.sio.reason.TRANSPORT_ERROR:
            return  # python-socketio reconnects by itself
        if self._move_after is not None:
            # After an Engine.IO close (a drain's, a shed's) python-socketio does not reconnect: do it here.
            delay, self._move_after = self._move_after, None
            self._spawn(self._reconnect(delay))
        elif self.closed_reason is None:
            self.closed_reason = reason  # a Socket.IO DISCONNECT: the server meant it

    def _on_ended(self, event, data):
        self.closed_reason = f"{event}: {data}"  # auth-expired, or cut off for flooding
        log.error("%s", self.closed_reason)

    def _on_connect_error(self, data=None):
        if isinstance(data, dict):  # the server refused the CONNECT (not a transport failure)
            self._connect_error = data.get("message")

    async def _reconnect(self, delay):
        backoff = 0.5
        await asyncio.sleep(delay)
        while not self._closing and not self.sio.connected:
            try:
                if self.sio.eio.state == "disconnected":
                    await self.connect()
                    return
            except ChatError as error:
                log.warning("reconnect failed (%s)", error)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5)

    def _spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the chat-server or its load balancer, e.g. http://localhost:3000")
    parser.add_argument("--room", required=True, help="the room to join")
    parser.add_argument("--token", default=os.environ.get("CHAT_TOKEN"), help="a JWT (default: $CHAT_TOKEN)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def show(room, event, data):
        if event == "message":
            print(f"[{room} #{data.get('roomSeq')}] {data['from']}: {data['text']}", flush=True)

    def answer(room, stream_id, text, error):
        print(f"[{room}] AI{' (' + error + ')' if error else ''}: {text}", flush=True)

    client = ChatClient(args.url, args.token, on_event=show, on_answer=answer)
    try:
        await client.connect()
        print(f"joined {args.room} at roomSeq {await client.join(args.room)}", flush=True)
        while line := (await asyncio.to_thread(sys.stdin.readline)):
            line = line.strip()
            try:
                if line.startswith("/ai "):
                    await client.ask(args.room, line[4:])  # on_answer prints it
                elif line:
                    await client.send(args.room, line)
            except ChatError as error:
                print(f"refused: {error}", file=sys.stderr, flush=True)
    except ChatError as error:
        sys.exit(f"error: {error}")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
