"""One session from its URI pairing to its logout, as the real endpoints run it.

Pairing by URI, the first records both ways (the phone's confirming Ack, the station's
Ack, both sides' first notices and messages), a Ping, a drop, a resume whose resend is
a DataRun, a second resume, then the phone's confirmed logout with the wipe receipt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.vectors.common import (
    ADDRESSES,
    OFFER_TTL,
    PHONE_SETTINGS,
    STATION_NAME,
    STATION_SETTINGS,
    T0,
    check,
    identity_json,
    kinds,
    phone_identity,
    prologue,
    receipt_signing_key,
)
from tests.vectors.fixed import JSON, Draws, fixed_key, hx, key_json, label_bytes
from tests.vectors.refusals import clear_refusals, hello_of, resume_gap, session_ended
from tests.vectors.trace import HandshakeTrace, trace_handshake
from tests.vectors.wire import TO_PHONE, TO_STATION, Wire
from tunnel.entropy import OFFER_ID, OFFER_SECRET, SESSION_ID, X25519
from tunnel.events import LogoutRequested, MessageReceived, SessionEnded
from tunnel.flights import PAIR_URI_PROTOCOL, PSK_PROTOCOL, MessageType, encode_hello
from tunnel.noise import KeyPair
from tunnel.offer import PairingOffer, new_offer
from tunnel.open_offers import OFFER_GRACE
from tunnel.session import PhoneEndpoint
from tunnel.station_endpoint import StationEndpoint
from tunnel.station_handshake import StationOffer
from wire.app import Command, Device, MirrorUpdate, Policy, ReceiptKey, encode
from wire.receipts import ReceiptFacts, sign

CODE = "4821-0937"  # the offer's short code (shown beside the QR code; unused here)


@dataclass
class Session:
    """What the refusal vectors need of the session: its station and latest secrets."""

    station: StationEndpoint
    station_draws: Draws
    session_id: bytes
    files: dict[str, JSON] = field(default_factory=dict)
    refusals: JSON = field(default_factory=dict)


def make_offer() -> tuple[PairingOffer, KeyPair, Draws]:
    """The offer exactly as a station worker makes it (``tunnel.offer.new_offer``)."""
    draws = Draws("station")
    key = fixed_key("offer: X25519 static key")
    draws.add(X25519, "the offer's X25519 private key", key.private)
    draws.add(OFFER_ID, "offer id", label_bytes("offer id", 8))
    draws.add(OFFER_SECRET, "the offer's one-time secret", label_bytes("offer secret", 16))
    with draws.using():
        # The worker dates the expiry past the rotation by the grace (and a second).
        offer, keypair = new_offer(STATION_NAME, ADDRESSES, now=T0 + OFFER_GRACE + 1, ttl=OFFER_TTL)
    draws.finish()
    return offer, keypair, draws


def _resume(
    wire: Wire, conn: int, n: int, secret: bytes, session_id: bytes, cursors: tuple[int, int]
) -> HandshakeTrace:
    phone_e = fixed_key(f"phone: ephemeral, resume {n}")
    station_e = fixed_key(f"station: ephemeral, resume {n}")
    wire.phone_draws.add(X25519, f"phone ephemeral private key (resume {n})", phone_e.private)
    wire.station_draws.add(X25519, f"station ephemeral private key (resume {n})", station_e.private)
    trace = trace_handshake(
        PSK_PROTOCOL,
        prologue(MessageType.RESUME, session_id),
        secret,
        phone_e=phone_e,
        station_e=station_e,
        station_static=None,
        payloads=(cursors[0].to_bytes(8, "big"), cursors[1].to_bytes(8, "big")),
    )
    wire.keys(conn, trace.i2r, trace.r2i)
    return trace


def _handshake_json(trace: HandshakeTrace, protocol: str, psk: bytes, pro: bytes) -> JSON:
    return {
        "protocol_name": protocol,
        "prologue": hx(pro),
        "psk": hx(psk),
        "steps": trace.steps,
        **trace.summary(),
    }


def uri_session() -> Session:
    offer, offer_key, _ = make_offer()
    uri = offer.to_uri()
    parsed = PairingOffer.from_uri(uri)
    check(parsed == offer, "the URI does not parse back to its offer")
    identity = phone_identity()
    phone_draws, station_draws = Draws("phone"), Draws("station")
    station = StationEndpoint(
        STATION_SETTINGS,
        station=STATION_NAME,
        offer=StationOffer(offer.offer_id, offer_key, offer.psk(), CODE),
        now=T0,
    )
    phone = PhoneEndpoint(
        PHONE_SETTINGS,
        identity=identity,
        uri_offer=(parsed.offer_id, parsed.public_key, parsed.psk()),
    )
    wire = Wire(phone, station, phone_draws, station_draws)

    # -- pairing -----------------------------------------------------------------------
    session_id = label_bytes("session id", 16)
    phone_e, station_e = fixed_key("phone: ephemeral, pairing"), fixed_key("station: ephemeral")
    phone_draws.add(X25519, "phone ephemeral private key (pairing)", phone_e.private)
    station_draws.add(SESSION_ID, "session id", session_id)
    station_draws.add(X25519, "station ephemeral private key (pairing)", station_e.private)
    pairing_prologue = prologue(MessageType.PAIR_URI, offer.offer_id)
    accept_payload = session_id + STATION_NAME.encode("utf-8")
    pairing = trace_handshake(
        PAIR_URI_PROTOCOL,
        pairing_prologue,
        parsed.psk(),
        phone_e=phone_e,
        station_e=station_e,
        station_static=offer_key,
        payloads=(lambda h: identity.public_key + identity.sign_handshake(h), accept_payload),
    )
    wire.keys(1, pairing.i2r, pairing.r2i)
    t = T0 + 1
    wire.open(1, t)
    hello = wire.messages(1, TO_STATION)[0]
    check(
        hello == encode_hello(MessageType.PAIR_URI, offer.offer_id, pairing.messages[0]),
        "PAIR_URI differs from the traced message 1",
    )
    accept = wire.messages(1, TO_PHONE)[0]
    check(accept == bytes([MessageType.ACCEPT]) + pairing.messages[1], "ACCEPT differs")
    check(station.session_id == session_id and phone.session_id == session_id, "not paired")
    station.answer_close = False  # as the worker: its receipt goes before its Close

    # -- first words both ways -----------------------------------------------------------
    receipt_key = receipt_signing_key()
    t += 0.1
    station.notify(encode(ReceiptKey(bytes(receipt_key.verify_key))), t)
    station.notify(encode(Policy(T0 + 121.0, "inactivity", t)), t)
    phone.notify(encode(Device("medic-phone", 87)), t)
    snapshot = MirrorUpdate("snapshot", 3, (("c1", "Ward 2"),), (("m1", "c1", "Dr A", "hi", T0),))
    phone.send(encode(snapshot), t)
    wire.pump(t)
    t += 0.4
    station.send(encode(Command("BP 120/80, bed 4", None, t, None)), t)
    wire.pump(t)
    _apply(wire, t)
    t += 1.0  # the station has sent nothing for 1 s: it pings
    station.handle_timer(t)
    wire.pump(t)
    wire.drop(1, t + 0.5)

    # -- resume 1: the queued commands come again as one DataRun --------------------------
    t += 1.0
    for i, text in enumerate(("note: fever 38.5", "page Dr B", "move bed 4 to ward 3")):
        station.send(encode(Command(text, "c1" if i == 0 else None, t, 600.0 if i else None)), t)
    secret1 = pairing.next_secret
    t += 1.0
    resume1 = _resume(wire, 2, 1, secret1, session_id, (1, 1))
    wire.note("the phone resumes: RESUME keyed by the secret its pairing left")
    wire.open(2, t)
    _apply(wire, t)
    wire.drop(2, t + 0.5)

    # -- resume 2 ----------------------------------------------------------------------
    t += 1.0
    station.send(encode(Command("last order", None, t, None)), t)
    t += 1.0
    resume2 = _resume(wire, 3, 2, resume1.next_secret, session_id, (4, 1))
    wire.note("the phone resumes again, keyed by the secret resume 1 left")
    wire.open(3, t)
    _apply(wire, t)
    secret_now = resume2.next_secret
    state_before_logout = phone.export_state()
    check(state_before_logout.secret == secret_now, "the phone does not hold resume 2's secret")
    refusals: JSON = {
        "clear": clear_refusals(station, hello_of(wire, 1), hello_of(wire, 3), t + 0.2),
        "resume_gap": resume_gap(station, state_before_logout, t + 0.3),
    }

    # -- the phone's confirmed logout ----------------------------------------------------
    t += 1.0
    wire.note("the phone logs out (medic-phone unlink): Close, answered by the station")
    phone.close("remote", t, confirm=True)
    wire.pump(t)
    check(any(isinstance(e, LogoutRequested) for e in wire.station_events), "no LogoutRequested")
    facts = ReceiptFacts(session_id.hex(), STATION_NAME, "remote", T0 + 1, t, 5, 5, 5, ())
    receipt = sign(receipt_key, facts)
    station.notify(encode(receipt), t)
    station.ended_receipt = receipt.signature + receipt.body
    station.close("remote", t)
    wire.pump(t)
    ended = [e for e in wire.phone_events if isinstance(e, SessionEnded)]
    check(len(ended) == 1 and ended[0].confirmed, "the phone's logout was not confirmed")
    phone_draws.finish()
    station_draws.finish()
    refusals["session_ended"] = session_ended(station, state_before_logout, t + 1.0)

    session = Session(station, station_draws, session_id, refusals=refusals)
    session.files["session.json"] = {
        "description": "One session: pairing by URI, the first records both ways, a Ping,"
        " a drop, two resumes (the first resends three commands as one DataRun), and the"
        " phone's confirmed logout with the signed wipe receipt. Every message in order.",
        "inputs": {
            "time_start": T0,
            "station_name": STATION_NAME,
            "phone_identity": identity_json(identity),
            "offer": {
                "uri": uri,
                "offer_id": hx(offer.offer_id),
                "static_key": key_json(offer_key),
                "secret": hx(offer.secret),
                "expires_at": offer.expires_at,
                "psk": hx(parsed.psk()),
            },
            "receipt_key": {
                "seed": hx(bytes(receipt_key)),
                "public": hx(bytes(receipt_key.verify_key)),
            },
            "phone_draws": phone_draws.drawn,
            "station_draws": station_draws.drawn,
        },
        "pairing": {
            **_handshake_json(pairing, PAIR_URI_PROTOCOL, parsed.psk(), pairing_prologue),
            "h_signed_by_phone": hx(pairing.h_before_payload[0]),
            "signed_message": hx(b"fieldstation identity v1\x00" + pairing.h_before_payload[0]),
            "identity_payload": hx(pairing.payloads[0]),
            "accept_payload": hx(pairing.payloads[1]),
        },
        "resume_1": _handshake_json(
            resume1, PSK_PROTOCOL, secret1, prologue(MessageType.RESUME, session_id)
        ),
        "resume_2": _handshake_json(
            resume2, PSK_PROTOCOL, resume1.next_secret, prologue(MessageType.RESUME, session_id)
        ),
        "receipt": {
            "body": receipt.body.decode("ascii"),
            "signature": hx(receipt.signature),
        },
        "transcript": wire.transcript(),
        "events": {"phone": kinds(wire.phone_events), "station": kinds(wire.station_events)},
    }
    return session


def _apply(wire: Wire, now: float) -> None:
    """The phone's application: it applies each command durably, then acknowledges."""
    received = [e for e in wire.phone_events if isinstance(e, MessageReceived)]
    if received:
        wire.phone.acknowledge(received[-1].seq, now)
        wire.pump(now)
