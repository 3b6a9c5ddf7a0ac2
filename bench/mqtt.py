"""What a clinic's IT lead would reach for instead: Mosquitto with a persistent session.

The benchmark starts Debian's ``mosquitto`` on 127.0.0.1 and drives it with
``paho-mqtt`` (the maintained Python client). The semantics are kept as close to ours
as MQTT allows:

* the publisher (the kiosk) publishes at QoS 1, 200-byte payloads, with at most 1,024
  in flight (our window);
* the subscriber (the phone) holds a persistent session (fixed client id, clean
  session off) at QoS 1 and applies each message into a SQLite file (WAL,
  ``synchronous=FULL``), committing whatever arrived together in one transaction, and
  acknowledges (manual PUBACK) only after the commit, as our phone does.

Throughput is from the first publish to the last message committed. Drain: the
subscriber goes away, messages are published meanwhile, and it comes back. Recovery is
measured as ours is: a second subscriber reaches the broker through the fault proxy,
which resets its connection; one message is published at once; the figure runs from
the cut to that message committed. Its client reconnects at once (``reconnect_delay``
0), as our phone's first retry does.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import socket
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.raw import PAYLOAD, WINDOW
from drill.proxy import FaultProxy

MOSQUITTO = "mosquitto"
TOPIC = "bench/commands"
START_ATTEMPTS = 3


class MosquittoMissing(RuntimeError):
    """Debian's mosquitto is not installed (``make bench`` installs it as root)."""


class MqttFailed(RuntimeError):
    """Mosquitto is installed but the baseline could not be measured (a real failure)."""


def find_mosquitto() -> str:
    found = shutil.which(MOSQUITTO) or shutil.which(f"/usr/sbin/{MOSQUITTO}")
    if found is None:
        raise MosquittoMissing(
            "mosquitto is not installed: install the Debian package `mosquitto`"
            " (`make bench` does, as root)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_broker(executable: str, tmp: Path) -> tuple[asyncio.subprocess.Process, int]:
    """A broker of our own on a free port. Another process may take the port between our
    probe and mosquitto's bind, so a broker that exits at once is tried again elsewhere."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        config = tmp / f"mosquitto-{attempt}.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"  # our station's queue is RAM too
            f"max_inflight_messages {WINDOW}\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
        )
        proc = await asyncio.create_subprocess_exec(
            executable,
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while proc.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return proc, port
            await asyncio.sleep(0.05)
        await _stop(proc)
    raise MqttFailed(f"mosquitto did not start in {START_ATTEMPTS} attempts")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


class DurableSubscriber:
    """The phone's role: apply into SQLite, commit a burst, then PUBACK each message.
    Each payload starts with its number; when each was committed is kept."""

    def __init__(self, port: int, db_path: Path, client_id: str) -> None:
        self.port = port
        self.db_path = db_path
        self.client_id = client_id
        self.applied = 0
        self.applied_at: dict[int, float] = {}  # payload number -> perf_counter
        self.done = threading.Event()
        self.expected = 0
        self._changed = threading.Condition()
        self._inbox: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()
        self._connected = threading.Event()
        self.client = self._client()
        self._applier = threading.Thread(target=self._apply_loop, daemon=True)
        self._applier.start()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=0, max_delay=1)  # the first retry at once
        client.on_message = lambda _c, _u, message: self._inbox.put(message)
        client.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
        # Connected once the broker has the subscription: a message published before
        # that would find no session to keep it for.
        client.on_subscribe = lambda *_: self._connected.set()
        return client

    def connect(self) -> None:
        self._connected.clear()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._connected.wait(30):
            raise MqttFailed("the subscriber could not connect in 30 s")

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client = self._client()  # a new client object, the same persistent session

    def expect(self, count: int) -> None:
        self.applied = 0
        self.expected = count
        self.done.clear()

    def wait_applied(self, number: int, within: float) -> float:
        with self._changed:
            if not self._changed.wait_for(lambda: number in self.applied_at, within):
                raise MqttFailed(f"message {number} was not applied in {within} s")
            return self.applied_at[number]

    def _apply_loop(self) -> None:
        db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS commands (mid INTEGER, body BLOB)")
        try:
            while (first := self._inbox.get()) is not None:
                batch = [first]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < WINDOW:
                        message = self._inbox.get_nowait()
                        if message is None:
                            self._inbox.put(None)
                            break
                        batch.append(message)
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO commands VALUES (?, ?)", [(m.mid, m.payload) for m in batch]
                )
                db.execute("COMMIT")
                now = time.perf_counter()
                for message in batch:
                    self.client.ack(message.mid, message.qos)
                with self._changed:
                    for message in batch:
                        self.applied_at[_number(message.payload)] = now
                    self.applied += len(batch)
                    self._changed.notify_all()
                if self.applied >= self.expected:
                    self.done.set()
        finally:
            db.close()

    def close(self) -> None:
        self._inbox.put(None)
        self._applier.join(10)
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop_stop()


def _number(payload: bytes | bytearray) -> int:
    return int(struct.unpack_from(">Q", payload)[0])


class Publisher:
    """The kiosk's role: numbered QoS 1 publishes, at most a window in flight."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-kiosk", protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(WINDOW)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.next = 0

    def publish(self, count: int) -> int:
        """Publish ``count`` messages; the number of the last one."""
        for _ in range(count):
            self.next += 1
            body = struct.pack(">Q", self.next) + PAYLOAD[8:]
            self.client.publish(TOPIC, body, qos=1)
        return self.next

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[tuple[int, Path]]:
    executable = find_mosquitto()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        proc, port = await _start_broker(executable, tmp)
        try:
            yield port, tmp
        finally:
            await _stop(proc)


async def mqtt_throughput_and_drain(count: int, outage: int) -> dict[str, float]:
    async with broker() as (port, tmp):
        subscriber = DurableSubscriber(port, tmp / "phone.db", "bench-phone")
        publisher = await asyncio.to_thread(Publisher, port)
        try:
            await asyncio.to_thread(subscriber.connect)
            subscriber.expect(count)
            start = time.perf_counter()
            await asyncio.to_thread(publisher.publish, count)
            if not await asyncio.to_thread(subscriber.done.wait, 120):
                raise MqttFailed(f"only {subscriber.applied}/{count} arrived in 120 s")
            throughput = count / (time.perf_counter() - start)
            # The same outage as ours: the phone goes, commands queue, it comes back.
            await asyncio.to_thread(subscriber.disconnect)
            subscriber.expect(outage)
            await asyncio.to_thread(publisher.publish, outage)
            await asyncio.sleep(0.5)  # let the broker take them all before the phone returns
            back = time.perf_counter()
            await asyncio.to_thread(subscriber.connect)
            if not await asyncio.to_thread(subscriber.done.wait, 120):
                raise MqttFailed(f"only {subscriber.applied}/{outage} after the outage")
            drained = time.perf_counter() - back
        finally:
            await asyncio.to_thread(publisher.close)
            await asyncio.to_thread(subscriber.close)
    return {"mqtt_msgs_per_s": throughput, "mqtt_drain_10k_s": drained * 10_000 / outage}


async def mqtt_recovery(drops: int) -> list[float]:
    """Seconds from a reset of the subscriber's link to the next message committed."""
    async with broker() as (port, tmp):
        proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", port))
        subscriber = DurableSubscriber(await proxy.start(), tmp / "phone.db", "bench-phone-r")
        publisher = await asyncio.to_thread(Publisher, port)
        samples = []
        try:
            await asyncio.to_thread(subscriber.connect)
            first = await asyncio.to_thread(publisher.publish, 1)
            await asyncio.to_thread(subscriber.wait_applied, first, 30)
            for _ in range(drops):
                cut = time.perf_counter()
                proxy.cut()
                number = publisher.publish(1)
                applied = await asyncio.to_thread(subscriber.wait_applied, number, 30)
                samples.append(applied - cut)
        finally:
            await asyncio.to_thread(publisher.close)
            await asyncio.to_thread(subscriber.close)
            await proxy.stop()
    return samples
