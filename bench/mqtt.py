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

Throughput is from the first publish to the last message committed. Recovery: the
subscriber goes away, messages are published meanwhile, and it comes back; the
figures run from its reconnect to the first and to the last message committed.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.raw import PAYLOAD, WINDOW

MOSQUITTO = "mosquitto"


class MosquittoMissing(RuntimeError):
    """Debian's mosquitto is not installed (``make bench`` installs it as root)."""


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


@contextlib.contextmanager
def mosquitto(tmp: Path) -> Iterator[int]:
    """A broker of our own on 127.0.0.1, ended when the block ends."""
    executable = find_mosquitto()
    port = _free_port()
    config = tmp / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"  # our station's queue is RAM too
        f"max_inflight_messages {WINDOW}\n"
        "max_queued_messages 1000000\n"
        "max_queued_bytes 0\n"
    )
    proc = subprocess.Popen(
        [executable, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MosquittoMissing(f"mosquitto did not start (exit {proc.poll()})")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DurableSubscriber:
    """The phone's role: apply into SQLite, commit a burst, then PUBACK each message."""

    def __init__(self, port: int, db_path: Path) -> None:
        self.port = port
        self.db_path = db_path
        self.applied = 0
        self.first_applied_at: float | None = None
        self.done = threading.Event()
        self.expected = 0
        self._inbox: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()
        self._connected = threading.Event()
        self.client = self._client()
        self._applier = threading.Thread(target=self._apply_loop, daemon=True)
        self._applier.start()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="bench-phone",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.on_message = lambda _c, _u, message: self._inbox.put(message)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("bench/commands", qos=1)

    def _on_subscribe(self, client: mqtt.Client, *_: object) -> None:
        # Ready only once the broker has the subscription: what is published before that
        # goes to nobody, and the run would wait out its 120 s for it.
        self._connected.set()

    def connect(self) -> None:
        self._connected.clear()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise MosquittoMissing("the subscriber could not connect")

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client = self._client()  # a new client object, the same persistent session

    def expect(self, count: int) -> None:
        self.applied = 0
        self.first_applied_at = None
        self.expected = count
        self.done.clear()

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
                for message in batch:
                    self.client.ack(message.mid, message.qos)
                if self.first_applied_at is None:
                    self.first_applied_at = time.perf_counter()
                self.applied += len(batch)
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


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-kiosk", protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(client: mqtt.Client, count: int) -> None:
    for _ in range(count):
        client.publish("bench/commands", PAYLOAD, qos=1)


def mqtt_figures(count: int, outage: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with mosquitto(tmp) as port:
            subscriber = DurableSubscriber(port, tmp / "phone.db")
            publisher = _publisher(port)
            try:
                subscriber.connect()
                subscriber.expect(count)
                start = time.perf_counter()
                _publish(publisher, count)
                if not subscriber.done.wait(120):
                    raise MosquittoMissing(f"only {subscriber.applied}/{count} arrived")
                throughput = count / (time.perf_counter() - start)
                # The same outage as ours: the phone goes, commands queue, it comes back.
                subscriber.disconnect()
                subscriber.expect(outage)
                _publish(publisher, outage)
                time.sleep(0.5)  # let the broker take them all before the phone returns
                back = time.perf_counter()
                subscriber.connect()
                if not subscriber.done.wait(120):
                    raise MosquittoMissing(f"only {subscriber.applied}/{outage} after the outage")
                drained = time.perf_counter() - back
                assert subscriber.first_applied_at is not None
                first = subscriber.first_applied_at - back
            finally:
                publisher.disconnect()
                publisher.loop_stop()
                subscriber.close()
    return {
        "mqtt_msgs_per_s": throughput,
        "mqtt_recovery_s": first,
        "mqtt_drain_10k_s": drained * 10_000 / outage,
    }
