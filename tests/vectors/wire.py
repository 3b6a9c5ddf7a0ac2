"""A phone endpoint and a station endpoint joined by hand, every message written down.

The vectors' transcripts are what the real ``PhoneEndpoint`` and ``StationEndpoint``
put on their transports, moved one message at a time in the order they were produced
(as the asyncio pump does), at fixed times, with each side's random draws fixed.
Records are opened afterwards with the keys the handshake traces give, so a transcript
shows each record's counter, key, nonce, associated data and frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tests.vectors.fixed import JSON, Draws, decode_frame_json, hx, nonce12
from tunnel.events import Event
from tunnel.flights import MessageType
from tunnel.noise import CipherState
from tunnel.payloads import parse_slots
from tunnel.records import DEFAULT_REKEY_INTERVAL
from tunnel.refusal import parse_refusal
from tunnel.session import PhoneEndpoint
from tunnel.station_endpoint import StationEndpoint

TO_STATION = "phone->station"
TO_PHONE = "station->phone"
_U16 = struct.Struct(">H")


@dataclass
class _Sent:
    direction: str
    conn: int
    data: bytes
    record: bool
    at: float


class Wire:
    def __init__(
        self,
        phone: PhoneEndpoint,
        station: StationEndpoint,
        phone_draws: Draws,
        station_draws: Draws,
    ) -> None:
        self.phone = phone
        self.station = station
        self.phone_draws = phone_draws
        self.station_draws = station_draws
        self.phone_events: list[Event] = []
        self.station_events: list[Event] = []
        self._sent: list[_Sent | JSON] = []
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._records: set[tuple[int, str]] = set()  # (conn, direction) past the handshake

    def keys(self, conn: int, phone_to_station: bytes, station_to_phone: bytes) -> None:
        self._keys[conn] = (phone_to_station, station_to_phone)

    def note(self, text: str) -> None:
        self._sent.append({"note": text})

    # -- driving ---------------------------------------------------------------------

    def open(self, conn: int, now: float) -> None:
        """A new transport: the station learns of it, the phone sends its hello."""
        self.station.connection_made(conn, now)
        with self.phone_draws.using():
            self.phone.connection_made(conn, now)
        self.pump(now)

    def drop(self, conn: int, now: float) -> None:
        """The transport is gone for both (WiFi lost), nothing more crosses it."""
        self.note(f"transport {conn} lost")
        self.phone.connection_lost(conn, now)
        self.station.connection_lost(conn, now)
        self.pump(now)

    def pump(self, now: float) -> None:
        """Move every message both ways until both endpoints are quiet."""
        while True:
            moved = self._move(self.phone, self.station, TO_STATION, now)
            moved |= self._move(self.station, self.phone, TO_PHONE, now)
            if not moved:
                return

    def _move(
        self,
        src: PhoneEndpoint | StationEndpoint,
        dst: PhoneEndpoint | StationEndpoint,
        direction: str,
        now: float,
    ) -> bool:
        draws = self.station_draws if dst is self.station else self.phone_draws
        data = src.data_to_send()
        closes = src.close_requests()
        self._events(src)
        for conn, chunk in data:
            record = (conn, direction) in self._records
            self._sent.append(_Sent(direction, conn, chunk, record, now))
            if not record and chunk[:1] == bytes([MessageType.ACCEPT]):
                self._records.update({(conn, TO_STATION), (conn, TO_PHONE)})
            with draws.using():
                dst.receive(conn, chunk, now)
        if data:
            dst.input_idle(now)
        for conn, reason in closes:
            who = "phone" if direction == TO_STATION else "station"
            self.note(f"the {who} closes transport {conn} ({reason})")
            src.connection_lost(conn, now)
            dst.connection_lost(conn, now)
        self._events(dst)
        return bool(data or closes)

    def _events(self, endpoint: PhoneEndpoint | StationEndpoint) -> None:
        target = self.phone_events if endpoint is self.phone else self.station_events
        target.extend(endpoint.events())

    def messages(self, conn: int, direction: str) -> list[bytes]:
        return [
            s.data
            for s in self._sent
            if isinstance(s, _Sent) and s.conn == conn and s.direction == direction
        ]

    # -- writing it down ---------------------------------------------------------------

    def transcript(self) -> list[JSON]:
        out: list[JSON] = []
        code: set[int] = set()  # transports that pair by code: ACCEPT names its slot
        for sent in self._sent:
            if not isinstance(sent, _Sent):
                out.append(sent)
                continue
            if sent.data[:1] == bytes([MessageType.PAIR_CODE]):
                code.add(sent.conn)
            entry: JSON = {"dir": sent.direction, "transport": sent.conn, "time": sent.at}
            if sent.record:
                entry.update(self._record(sent))
            else:
                entry.update(handshake_json(sent.data, code=sent.conn in code))
            entry["bytes"] = hx(sent.data)
            out.append(entry)
        return out

    def _record(self, sent: _Sent) -> JSON:
        i2r, r2i = self._keys[sent.conn]
        return record_json(i2r if sent.direction == TO_STATION else r2i, sent.data)


def record_json(key: bytes, record: bytes) -> JSON:
    """One record opened: its counter, the key and nonce it was sealed with, its frame."""
    header, body = record[:8], record[8:]
    counter = int.from_bytes(header, "big")
    cipher = CipherState(key)
    for _ in range(counter // DEFAULT_REKEY_INTERVAL):
        cipher.rekey()
    frame = cipher.decrypt_at(counter, header, body)
    return {
        "kind": "record",
        "counter": counter,
        "key": hx(cipher.key or b""),
        "nonce": hx(nonce12(counter)),
        "ad": hx(header),
        "frame_bytes": hx(frame),
        "frame": decode_frame_json(frame),
    }


def handshake_json(data: bytes, *, code: bool = False) -> JSON:
    """A handshake message's clear fields (the Noise parts as hex)."""
    kind = MessageType(data[0])
    out: JSON = {"kind": kind.name}
    body = data[1:]
    if kind in (MessageType.PAIR_URI, MessageType.RESUME):
        n = 8 if kind is MessageType.PAIR_URI else 16
        out["version"] = body[0]
        out["offer_id" if n == 8 else "session_id"] = hx(body[1 : 1 + n])
        out["noise_message_1"] = hx(body[1 + n :])
    elif kind is MessageType.PAIR_CODE:
        out["version"] = body[0]
        out["count"] = body[1]
        out["spake2_a"] = [hx(body[2 + 33 * i : 2 + 33 * (i + 1)]) for i in range(body[1])]
    elif kind is MessageType.CODE_REPLY:
        out["slots"] = [{"slot": s, "spake2_b": hx(m)} for s, m in parse_slots(body, sized=False)]
    elif kind is MessageType.CODE_NOISE:
        out["slots"] = [
            {"slot": s, "length": len(m), "noise_message_1": hx(m)}
            for s, m in parse_slots(body, sized=True)
        ]
    elif kind is MessageType.ACCEPT and code:
        out["slot"] = body[0]
        out["noise_message_2"] = hx(body[1:])
    elif kind is MessageType.ACCEPT:
        out["noise_message_2"] = hx(body)
    elif kind is MessageType.REFUSE:
        out.update(refusal_json(data))
    return out


def refusal_json(data: bytes) -> JSON:
    refused = parse_refusal(data)
    reason_len = data[3]
    (body_len,) = _U16.unpack_from(data, 4 + reason_len)
    return {
        "code": int(refused.code),
        "code_name": refused.code.name,
        "flags": refused.flags,
        "reason": refused.reason,
        "body_length": body_len,
        "body": hx(refused.body),
        "macs": [hx(m) for m in refused.macs],
    }
