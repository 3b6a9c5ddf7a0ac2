"""Pairing by short code: SPAKE2 (the ``spake2`` package's Ed25519 group) per slot, then
``NNpsk0`` under each slot's key, as the real endpoints run it.

The main transcript has two open codes (the station rotated 2 s ago; the medic typed
the previous code), so every part of the slot framing shows: two SPAKE2 exchanges, two
replies, two Noise messages, and ACCEPT naming slot 1. A second transcript is a wrong
code (a clear WRONG_CODE refusal) and the attempt right after it (CODE_PAUSED).
"""

from __future__ import annotations

import hashlib
from typing import Any

from spake2.parameters.ed25519 import ParamsEd25519

from tests.vectors.common import (
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
)
from tests.vectors.fixed import JSON, Draws, fixed_key, hx, label_bytes
from tests.vectors.trace import trace_handshake
from tests.vectors.wire import TO_PHONE, TO_STATION, Wire
from tunnel.entropy import SESSION_ID, SPAKE2, X25519
from tunnel.flights import PSK_PROTOCOL, MessageType
from tunnel.pake import normalize_code
from tunnel.payloads import code_prologue, encode_code_hello
from tunnel.session import PhoneEndpoint
from tunnel.station_endpoint import StationEndpoint
from tunnel.station_handshake import StationOffer

ID_PHONE = b"fieldstation-phone"
ID_STATION = b"fieldstation-station"
PSK_PERSON = b"fs-code-psk"
_G: Any = ParamsEd25519.group


def _le(scalar: int) -> str:
    return hx(_G.scalar_to_bytes(scalar))


def spake2_constants() -> JSON:
    return {
        "group": "Ed25519 (prime-order subgroup, order L = 2^252 +"
        " 27742317777372353535851937790883648493)",
        "G": hx(_G.Base.to_bytes()),
        "M": hx(ParamsEd25519.M.to_bytes()),
        "N": hx(ParamsEd25519.N.to_bytes()),
        "id_a": ID_PHONE.decode(),
        "id_b": ID_STATION.decode(),
        "w_of_empty_password": _le(_G.password_to_scalar(b"")),
    }


def spake2_exchange(
    phone_code: str, phone_entropy: bytes, station_code: str, station_entropy: bytes
) -> JSON:
    """One slot's exchange written out with the spake2 package's own group code."""
    pw_a, pw_b = phone_code.encode("ascii"), station_code.encode("ascii")
    w_a, w_b = _G.password_to_scalar(pw_a), _G.password_to_scalar(pw_b)
    x = _G.random_scalar(lambda n: phone_entropy)
    y = _G.random_scalar(lambda n: station_entropy)
    big_x, big_y = _G.Base.scalarmult(x), _G.Base.scalarmult(y)
    t = big_x.add(ParamsEd25519.M.scalarmult(w_a))
    s = big_y.add(ParamsEd25519.N.scalarmult(w_b))
    k_a = s.add(ParamsEd25519.N.scalarmult(-w_a)).scalarmult(x)
    k_b = t.add(ParamsEd25519.M.scalarmult(-w_b)).scalarmult(y)

    def key(pw: bytes, k: Any) -> tuple[bytes, bytes]:
        transcript = b"".join(
            [
                hashlib.sha256(pw).digest(),
                hashlib.sha256(ID_PHONE).digest(),
                hashlib.sha256(ID_STATION).digest(),
                t.to_bytes(),
                s.to_bytes(),
                k.to_bytes(),
            ]
        )
        raw = hashlib.sha256(transcript).digest()
        return raw, hashlib.blake2b(raw, digest_size=32, person=PSK_PERSON).digest()

    (key_a, psk_a), (key_b, psk_b) = key(pw_a, k_a), key(pw_b, k_b)
    return {
        "phone": {
            "password": phone_code,
            "w": _le(w_a),
            "entropy": hx(phone_entropy),
            "x": _le(x),
            "X": hx(big_x.to_bytes()),
            "T": hx(t.to_bytes()),
            "message_a": hx(b"A" + t.to_bytes()),
            "K": hx(k_a.to_bytes()),
            "spake2_key": hx(key_a),
            "psk": hx(psk_a),
        },
        "station": {
            "password": station_code,
            "w": _le(w_b),
            "entropy": hx(station_entropy),
            "y": _le(y),
            "Y": hx(big_y.to_bytes()),
            "S": hx(s.to_bytes()),
            "message_b": hx(b"B" + s.to_bytes()),
            "K": hx(k_b.to_bytes()),
            "spake2_key": hx(key_b),
            "psk": hx(psk_b),
        },
        "keys_match": psk_a == psk_b,
    }


def _offer(n: int, code: str) -> StationOffer:
    key = fixed_key(f"code offer {n}: X25519 static key")
    return StationOffer(label_bytes(f"code offer {n}: id", 8), key, bytes(32), code)


def code_pairing() -> JSON:
    identity = phone_identity()
    previous, current = "1234-5678", "8765-4321"
    typed = "1234 5678"  # as the medic typed it; the password is its canonical form
    station = StationEndpoint(
        STATION_SETTINGS,
        station=STATION_NAME,
        offer=_offer(1, previous),
        now=T0,
        make_offer=lambda: _offer(2, current),
        offer_ttl=OFFER_TTL,
    )
    station.handle_timer(T0 + OFFER_TTL)  # rotation: the previous code stays open 10 s
    station.events()
    phone = PhoneEndpoint(PHONE_SETTINGS, identity=identity, code=typed)
    phone_draws, station_draws = Draws("phone"), Draws("station")
    wire = Wire(phone, station, phone_draws, station_draws)

    a_entropy = [label_bytes(f"phone: SPAKE2 entropy, slot {i}", 64) for i in (0, 1)]
    b_entropy = [label_bytes(f"station: SPAKE2 entropy, slot {i}", 64) for i in (0, 1)]
    phone_e = [fixed_key(f"phone: ephemeral, code slot {i}") for i in (0, 1)]
    station_e = fixed_key("station: ephemeral, code slot 1")
    session_id = label_bytes("code session id", 16)
    for i in (0, 1):
        phone_draws.add(SPAKE2, f"SPAKE2 entropy, slot {i}", a_entropy[i])
    for i in (0, 1):
        phone_draws.add(X25519, f"phone ephemeral private key, slot {i}", phone_e[i].private)
    station_draws.add(SESSION_ID, "session id", session_id)
    for i in (0, 1):
        station_draws.add(SPAKE2, f"SPAKE2 entropy, slot {i}", b_entropy[i])
    station_draws.add(X25519, "station ephemeral private key, slot 1", station_e.private)

    password = normalize_code(typed)
    exchanges = [
        spake2_exchange(password, a_entropy[i], (current, previous)[i], b_entropy[i])
        for i in (0, 1)
    ]
    a_msgs = [bytes.fromhex(x["phone"]["message_a"]) for x in exchanges]
    b_msgs = [bytes.fromhex(x["station"]["message_b"]) for x in exchanges]
    hello_prologue = prologue(MessageType.PAIR_CODE, b"")
    slots = []
    for i in (0, 1):
        pro = code_prologue(hello_prologue, i, a_msgs[i], b_msgs[i])
        psk = bytes.fromhex(exchanges[i]["phone"]["psk"])
        trace = trace_handshake(
            PSK_PROTOCOL,
            pro,
            psk,
            phone_e=phone_e[i],
            station_e=station_e,
            station_static=None,
            payloads=(
                lambda h: identity.public_key + identity.sign_handshake(h),
                session_id + STATION_NAME.encode("utf-8"),
            ),
        )
        if i == 1:
            wire.keys(1, trace.i2r, trace.r2i)
        slots.append((pro, psk, trace))

    t = T0 + OFFER_TTL + 2
    wire.open(1, t)
    sent = wire.messages(1, TO_STATION)
    check(sent[0] == bytes([MessageType.PAIR_CODE, 2]) + encode_code_hello(a_msgs), "PAIR_CODE")
    replies = wire.messages(1, TO_PHONE)
    check(replies[0] == bytes([0x10, 2, 0]) + b_msgs[0] + bytes([1]) + b_msgs[1], "CODE_REPLY")
    noise = [s[2].messages[0] for s in slots]
    expected = bytes([0x04, 2])
    for i in (0, 1):
        expected += bytes([i]) + len(noise[i]).to_bytes(2, "big") + noise[i]
    check(sent[1] == expected, "CODE_NOISE differs from the traced messages")
    check(replies[1] == bytes([0x11, 1]) + slots[1][2].messages[1], "ACCEPT differs")
    check(station.session_id == session_id == phone.session_id, "not paired")
    phone_draws.finish()
    station_draws.finish()

    def slot_json(i: int) -> JSON:
        pro, psk, trace = slots[i]
        out: JSON = {
            "slot": i,
            "station_code": (current, previous)[i],
            "spake2": exchanges[i],
            "prologue": hx(pro),
            "psk": hx(psk),
            "h_signed_by_phone": hx(trace.h_before_payload[0]),
            "identity_payload": hx(trace.payloads[0]),
            "noise_message_1": hx(trace.messages[0]),
        }
        if i == 1:
            out.update(
                {"steps": trace.steps, "accept_payload": hx(trace.payloads[1]), **trace.summary()}
            )
        else:
            out["steps_through_message_1"] = trace.steps[: _message_1_steps(trace.steps)]
            out["note"] = (
                "slot 0 is the current code, which the medic did not type: the station"
                " reads this message under its own slot-0 key, it fails, and the station"
                " goes on to slot 1"
            )
        return out

    return {
        "description": "Pairing by code with two open codes: the station rotated at"
        f" {T0 + OFFER_TTL} (its current code {current}, the previous {previous} open"
        f" for 10 s more); the medic typed {typed!r}, the previous code. Slot 1 pairs.",
        "inputs": {
            "time_start": T0,
            "typed": typed,
            "password": password,
            "station_name": STATION_NAME,
            "phone_identity": identity_json(identity),
            "phone_draws": phone_draws.drawn,
            "station_draws": station_draws.drawn,
        },
        "spake2_constants": spake2_constants(),
        "hello_prologue": hx(hello_prologue),
        "protocol_name": PSK_PROTOCOL,
        "slots": [slot_json(0), slot_json(1)],
        "transcript": wire.transcript(),
        "events": {"phone": kinds(wire.phone_events), "station": kinds(wire.station_events)},
    }


def _message_1_steps(steps: list[JSON]) -> int:
    for index, step in enumerate(steps):
        if step["op"] == "EncryptAndHash(payload 1)":
            return index + 1
    return len(steps)


def wrong_code() -> JSON:
    """One open code, a wrong guess (WRONG_CODE), then a retry during the pause."""
    identity = phone_identity()
    station = StationEndpoint(
        STATION_SETTINGS, station=STATION_NAME, offer=_offer(3, "1111-2222"), now=T0
    )
    phone_draws, station_draws = Draws("phone"), Draws("station")
    phone_draws.add(SPAKE2, "SPAKE2 entropy, slot 0", label_bytes("wrong code: phone slot 0", 64))
    phone_draws.add(SPAKE2, "SPAKE2 entropy, slot 1", label_bytes("wrong code: phone slot 1", 64))
    phone_draws.add(X25519, "phone ephemeral, slot 0", fixed_key("wrong code: phone e").private)
    station_draws.add(SESSION_ID, "session id", label_bytes("wrong code: session id", 16))
    station_draws.add(SPAKE2, "SPAKE2 entropy, slot 0", label_bytes("wrong code: station", 64))
    phone = PhoneEndpoint(PHONE_SETTINGS, identity=identity, code="1234-5678")
    wire = Wire(phone, station, phone_draws, station_draws)
    wire.note("the medic types 1234-5678; the station's only open code is 1111-2222")
    wire.open(1, T0 + 1)
    retry = PhoneEndpoint(PHONE_SETTINGS, identity=identity, code="1111-2222")
    again = Wire(retry, station, Draws("phone"), Draws("station"))
    for i in (0, 1):
        again.phone_draws.add(SPAKE2, f"SPAKE2 entropy, slot {i}", label_bytes(f"retry {i}", 64))
    again.note("one second later the right code, but code pairing is paused for 4 s")
    again.open(2, T0 + 2)
    for draws in (phone_draws, station_draws, again.phone_draws, again.station_draws):
        draws.finish()
    refusals = [wire.messages(1, TO_PHONE)[-1], again.messages(2, TO_PHONE)[-1]]
    check([r[1] for r in refusals] == [11, 12], "expected WRONG_CODE then CODE_PAUSED")
    return {
        "description": "A wrong code: the station answers its one open code (slot 0), the"
        " phone's Noise message fails under the station's key, the station refuses in"
        " clear (WRONG_CODE), burns that code and pauses code pairing for 4 s; a retry"
        " inside the pause is refused at once (CODE_PAUSED), before any SPAKE2 work.",
        "inputs": {
            "time_start": T0,
            "phone_draws": phone_draws.drawn + again.phone_draws.drawn,
            "station_draws": station_draws.drawn,
        },
        "transcript": wire.transcript() + again.transcript(),
    }
