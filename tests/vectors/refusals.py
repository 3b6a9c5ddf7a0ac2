"""Refusals as the real station endpoint makes them: clear ones (advisory), a resume gap
(authenticated, bound to its hello) and the ended session's (authenticated, unbound,
carrying the signed wipe receipt), with every MAC's input written out."""

from __future__ import annotations

import hashlib

from tests.vectors.common import PHONE_SETTINGS, check, kinds
from tests.vectors.fixed import JSON, Draws, fixed_key, hx
from tests.vectors.wire import TO_PHONE, Wire, refusal_json
from tunnel.entropy import X25519
from tunnel.events import ResumeGap, SessionEnded
from tunnel.flights import MessageType
from tunnel.refusal import FLAG_BOUND, parse_refusal, refusal_mac
from tunnel.session import PhoneEndpoint, PhoneState
from tunnel.station_endpoint import StationEndpoint

MAC_PERSON = b"fs2-refuse-mac"


def _exchange(station: StationEndpoint, conn: int, hello: bytes, now: float) -> bytes:
    station.connection_made(conn, now)
    station.receive(conn, hello, now)
    replies = station.data_to_send()
    station.close_requests()
    station.connection_lost(conn, now)
    station.events()
    check(len(replies) == 1, "a refusal is one message")
    return replies[0][1]


def clear_refusals(
    station: StationEndpoint, pairing_hello: bytes, resume_hello: bytes, now: float
) -> list[JSON]:
    """What the live session's station answers to hellos it must turn away."""
    cases = [
        ("a resume hello with wire version 1", resume_hello[:1] + b"\x01" + resume_hello[2:]),
        ("the pairing hello again, after the offer was spent", pairing_hello),
        (
            "a resume for a session this worker does not hold",
            bytes([3, 2]) + bytes(16) + resume_hello[18:],
        ),
        ("an exact replay of the last resume hello", resume_hello),
    ]
    out = []
    for conn, (what, hello) in enumerate(cases, start=20):
        reply = _exchange(station, conn, hello, now)
        out.append({"case": what, "hello": hx(hello), "refusal": hx(reply), **refusal_json(reply)})
    return out


def mac_json(data: bytes, session_id: bytes, secret: bytes, binding: bytes) -> JSON:
    """The MAC of a refusal written out: its input, then BLAKE2b under the secret."""
    refused = parse_refusal(data)
    raw_reason = data[4 : 4 + data[3]]
    bound = binding if refused.flags & FLAG_BOUND else b""
    mac_input = (
        session_id
        + bytes([data[1], refused.flags])
        + bound
        + bytes([len(raw_reason)])
        + raw_reason
        + len(refused.body).to_bytes(2, "big")
        + refused.body
    )
    mac = hashlib.blake2b(mac_input, digest_size=32, key=secret, person=MAC_PERSON).digest()
    check(
        mac
        == refusal_mac(secret, session_id, data[1], refused.flags, bound, raw_reason, refused.body),
        "the written-out MAC differs from tunnel.refusal's",
    )
    check(mac in refused.macs, "the refusal does not carry the MAC for this secret")
    return {
        "secret": hx(secret),
        "session_id": hx(session_id),
        "binding": hx(bound),
        "mac_input": hx(mac_input),
        "mac": hx(mac),
    }


def _restored(state: PhoneState, delivered: int) -> PhoneEndpoint:
    return PhoneEndpoint(
        PHONE_SETTINGS,
        state=PhoneState(state.session_id, state.secret, state.next_seq, delivered, state.station),
    )


def resume_gap(station: StationEndpoint, state: PhoneState, now: float) -> JSON:
    """A phone whose store went back to cursor 2 (it had acknowledged 5) resumes."""
    phone = _restored(state, 2)
    draws = Draws("phone")
    ephemeral = fixed_key("phone: ephemeral, restored store")
    draws.add(
        X25519, "phone ephemeral private key (the restored phone's resume)", ephemeral.private
    )
    wire = Wire(phone, station, draws, Draws("station"))
    wire.note("a copy of the phone restored from an older backup (cursor 2) resumes")
    wire.open(30, now)
    draws.finish()
    refusal = wire.messages(30, TO_PHONE)[-1]
    check(refusal[1] == 13, "expected RESUME_GAP")
    gaps = [e for e in wire.phone_events if isinstance(e, ResumeGap)]
    check(gaps == [ResumeGap(3, 5)], "the phone did not believe the gap")
    return {
        "description": "RESUME_GAP: the resume authenticates, but its cursor (2) is behind"
        " what this phone acknowledged (5). The refusal is MACed under the secret that"
        " verified and bound to the hello's ephemeral (flags bit 0).",
        "phone_draws": draws.drawn,
        "mac": mac_json(refusal, state.session_id, state.secret, ephemeral.public),
        "transcript": wire.transcript(),
        "phone_events": kinds(wire.phone_events),
    }


def session_ended(station: StationEndpoint, state: PhoneState, now: float) -> JSON:
    """A phone that missed the logout resumes after it: the ended session's refusal."""
    phone = _restored(state, state.delivered)
    draws = Draws("phone")
    ephemeral = fixed_key("phone: ephemeral, after logout")
    draws.add(X25519, "phone ephemeral private key (resume after the logout)", ephemeral.private)
    wire = Wire(phone, station, draws, Draws("station"))
    wire.note("a phone that missed the logout resumes with its last secret")
    wire.open(31, now)
    draws.finish()
    refusal = wire.messages(31, TO_PHONE)[-1]
    check(refusal == station.ended_refusal, "not the ended session's refusal")
    ended = [e for e in wire.phone_events if isinstance(e, SessionEnded)]
    check(len(ended) == 1 and phone.ended_details is not None, "the phone did not believe it")
    details = phone.ended_details
    assert details is not None and details.receipt is not None
    return {
        "description": "SESSION_ENDED made when the session ended: unbound (flags 0), one"
        " MAC per secret the station would still have accepted (here one), body items"
        " REASON and RECEIPT (signature (64) then the canonical JSON body).",
        "phone_draws": draws.drawn,
        "mac": mac_json(refusal, state.session_id, state.secret, ephemeral.public),
        "body_items": {
            "reason": details.reason,
            "undelivered": [list(r) for r in details.undelivered],
            "receipt_signature": hx(details.receipt[:64]),
            "receipt_body": details.receipt[64:].decode("ascii"),
        },
        "transcript": wire.transcript(),
        "phone_events": kinds(wire.phone_events),
    }


def hello_of(wire: Wire, conn: int) -> bytes:
    hello = wire.messages(conn, "phone->station")[0]
    check(hello[0] in (MessageType.PAIR_URI, MessageType.RESUME), "not a hello")
    return hello
