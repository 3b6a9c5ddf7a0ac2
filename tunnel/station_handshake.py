"""The handshake, station side: pairing by URI, pairing by code slots, and resume.

Pure like the phone's drivers (``tunnel.handshake``). None of them decides whether an
offer or a code is still open: the endpoint asks its ``OpenOffers`` and passes in what
is open, so every rule about spending an offer lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunnel.errors import HandshakeFailed, ResumeRefused
from tunnel.flights import PAIR_URI_PROTOCOL, PSK_PROTOCOL, Hello, MessageType, encode_message
from tunnel.noise import HandshakeState, KeyPair
from tunnel.pake import CodeExchange
from tunnel.payloads import (
    CURSOR,
    Keys,
    accept_payload,
    code_prologue,
    encode_slots,
    keys_of,
    parse_code_hello,
    parse_message,
    parse_slots,
    read_cursor,
    read_identity,
)


@dataclass(frozen=True, slots=True)
class StationOffer:
    """The secrets of one pairing offer a station worker holds open."""

    offer_id: bytes
    keypair: KeyPair
    psk: bytes  # from the URI's one-time secret
    code: str  # the short code it was shown with (a wrong guess replaces it)


@dataclass(frozen=True, slots=True)
class PhonePaired:
    keys: Keys
    phone_key: bytes
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ResumeResult:
    keys: Keys
    peer_cursor: int


def _accept(
    hs: HandshakeState, body: bytes, session_id: bytes, station: str, *, slot: int | None
) -> tuple[bytes, PhonePaired]:
    """Read the phone's identity message and answer it. ``HandshakeFailed`` unless the
    message authenticates under the handshake's psk and carries a valid signature."""
    # The hash the phone signed is the one before its payload was decrypted.
    signed_hash: list[bytes] = []
    payload = hs.read_message(body, observe_hash=signed_hash.append)
    phone_key, fingerprint = read_identity(payload, signed_hash[0])
    reply = hs.write_message(accept_payload(session_id, station))
    prefix = b"" if slot is None else bytes([slot])
    paired = PhonePaired(keys_of(hs, initiator=False), phone_key, fingerprint)
    return encode_message(MessageType.ACCEPT, prefix + reply), paired


class StationUriPairing:
    """Pairing by URI: one NKpsk0 message that authenticates under the offer, or not."""

    @staticmethod
    def receive_hello(
        hello: Hello, offer: StationOffer, session_id: bytes, station: str
    ) -> tuple[bytes, PhonePaired]:
        hs = HandshakeState(
            PAIR_URI_PROTOCOL,
            initiator=False,
            prologue=hello.prologue,
            s=offer.keypair,
            psks=[offer.psk],
        )
        return _accept(hs, hello.body, session_id, station, slot=None)


@dataclass(frozen=True, slots=True)
class _Slot:
    serial: int  # which open code this slot was answered with
    psk: bytes
    prologue: bytes


@dataclass(frozen=True, slots=True)
class CodeGuess:
    """One code attempt's outcome: the codes it was checked against, and the pairing."""

    evaluated: tuple[int, ...]  # serials of open codes whose key was tried
    accepted: tuple[bytes, PhonePaired] | None


@dataclass(frozen=True, slots=True)
class CodeAttempt:
    """The phone's guess, read but not yet tried: one NNpsk0 message per slot it answered.

    Trying it is a separate step (``evaluate``) because which codes are still open is the
    endpoint's to say, at the moment the guess arrived, like ``ResumeAttempt.accept``."""

    tries: tuple[tuple[int, _Slot, bytes], ...]  # (slot, what we answered it with, message)
    session_id: bytes
    station: str

    def evaluate(self, is_open: Callable[[int], bool]) -> CodeGuess:
        """Try each slot whose code is still open; a closed code is never evaluated."""
        evaluated: list[int] = []
        for slot, entry, message in self.tries:
            if not is_open(entry.serial):
                continue
            evaluated.append(entry.serial)
            hs = HandshakeState(
                PSK_PROTOCOL, initiator=False, prologue=entry.prologue, psks=[entry.psk]
            )
            try:
                accepted = _accept(hs, message, self.session_id, self.station, slot=slot)
            except HandshakeFailed:
                continue
            return CodeGuess(tuple(evaluated), accepted)
        return CodeGuess(tuple(evaluated), None)


class StationCodePairing:
    """Pairing by code: a SPAKE2 exchange per open code (slot 0 the current code, slot 1
    the previous during its grace), then each slot's NNpsk0 message under its own key.
    Each attempt is therefore at most one guess per open code.

    A ``HandshakeDriver`` (``tunnel.drivers``): it waits on its transport between our
    reply and the phone's guess, whose outcome is the ``CodeAttempt`` to try."""

    def __init__(self, session_id: bytes, station: str) -> None:
        self._session_id = session_id
        self._station = station
        self._slots: dict[int, _Slot] = {}

    @property
    def session_id(self) -> bytes:
        return self._session_id

    def receive_hello(self, hello: Hello, codes: list[tuple[int, str]]) -> bytes:
        """Answer one SPAKE2 message per open code (``(serial, code)``, current first)."""
        messages = parse_code_hello(hello.body)
        replies: list[tuple[int, bytes]] = []
        for slot, (serial, code) in enumerate(codes[: len(messages)]):
            exchange = CodeExchange(code, initiator=False)
            reply = exchange.start()
            psk = exchange.finish(messages[slot])
            prologue = code_prologue(hello.prologue, slot, messages[slot], reply)
            self._slots[slot] = _Slot(serial, psk, prologue)
            replies.append((slot, reply))
        return encode_message(MessageType.CODE_REPLY, encode_slots(replies, sized=False))

    def receive(self, data: bytes, /) -> tuple[None, CodeAttempt]:
        """Read the phone's guess (a ``PeerError`` if it does not parse). Nothing more
        goes from us before it is tried, and slots we never answered are left out."""
        tries = tuple(
            (slot, self._slots[slot], message)
            for slot, message in parse_slots(
                parse_message(data, MessageType.CODE_NOISE), sized=True
            )
            if slot in self._slots
        )
        return None, CodeAttempt(tries, self._session_id, self._station)


@dataclass(slots=True)
class ResumeAttempt:
    """A resume hello that authenticated under one of the session's secrets."""

    index: int  # which of the secrets it was
    peer_cursor: int
    hs: HandshakeState

    def accept(self, cursor: int) -> tuple[bytes, ResumeResult]:
        reply = self.hs.write_message(CURSOR.pack(cursor))
        result = ResumeResult(keys_of(self.hs, initiator=False), self.peer_cursor)
        return encode_message(MessageType.ACCEPT, reply), result


class StationResume:
    """Station side of a resume: try each secret the station would still accept."""

    @staticmethod
    def open(hello: Hello, secrets: list[bytes]) -> ResumeAttempt:
        for index, secret in enumerate(secrets):
            hs = HandshakeState(
                PSK_PROTOCOL, initiator=False, prologue=hello.prologue, psks=[secret]
            )
            try:
                payload = hs.read_message(hello.body)
            except HandshakeFailed:
                continue
            return ResumeAttempt(index, read_cursor(payload), hs)
        raise ResumeRefused("stale or unknown resumption secret")

    @staticmethod
    def ephemeral_of(hello: Hello) -> bytes:
        """The phone's ephemeral key in a resume hello: a replay repeats it exactly."""
        return hello.body[:32]
