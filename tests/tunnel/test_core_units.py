"""Unit tests of the tunnel's pure pieces: Noise misuse, records, frames, queue, channel,
backoff, offers, codes and the phone identity."""

from __future__ import annotations

import random
import re

import pytest

from tunnel.backoff import reconnect_delays
from tunnel.channel import ReliableChannel
from tunnel.errors import (
    AuthenticationFailed,
    HandshakeFailed,
    MalformedRecord,
    OfferFormatError,
    OversizedRecord,
    QueueFull,
    ReorderedRecord,
    ReplayedRecord,
    UsageError,
)
from tunnel.frames import Ack, Close, Data, DataRun, Ping, Pong, decode_frame, encode_frame
from tunnel.identity import PhoneIdentity, verify_handshake
from tunnel.noise import CipherState, HandshakeState, KeyPair
from tunnel.offer import PairingOffer, new_offer
from tunnel.pake import CodeExchange, generate_code, normalize_code
from tunnel.queue import OutageQueue
from tunnel.records import RecordReceiver, RecordSender

NN = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"


# -- Noise -------------------------------------------------------------------------------


def test_wrong_psk_fails_the_handshake() -> None:
    init = HandshakeState(NN, initiator=True, psks=[b"a" * 32])
    resp = HandshakeState(NN, initiator=False, psks=[b"b" * 32])
    with pytest.raises(HandshakeFailed):
        resp.read_message(init.write_message(b"hello"))
    assert not resp.complete


def test_nk_with_wrong_station_key_fails() -> None:
    station = KeyPair.generate()
    init = HandshakeState(
        "Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b",
        initiator=True,
        rs=KeyPair.generate().public,
        psks=[b"k" * 32],
    )
    resp = HandshakeState(
        "Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b", initiator=False, s=station, psks=[b"k" * 32]
    )
    with pytest.raises(HandshakeFailed):
        resp.read_message(init.write_message())


def test_noise_misuse_is_a_usage_error() -> None:
    init = HandshakeState(NN, initiator=True, psks=[b"a" * 32])
    with pytest.raises(UsageError):
        init.read_message(b"x" * 48)
    with pytest.raises(UsageError):
        init.split()
    with pytest.raises(UsageError):
        HandshakeState("Noise_ZZ_25519_ChaChaPoly_BLAKE2b", initiator=True)


def test_extra_secret_agrees_and_is_fresh() -> None:
    def run() -> tuple[bytes, bytes]:
        init = HandshakeState(NN, initiator=True, psks=[b"a" * 32])
        resp = HandshakeState(NN, initiator=False, psks=[b"a" * 32])
        resp.read_message(init.write_message())
        init.read_message(resp.write_message())
        return init.extra_secret(), resp.extra_secret()

    a1, b1 = run()
    a2, _ = run()
    assert a1 == b1 and a1 != a2 and len(a1) == 32


def test_decrypt_failure_leaves_the_nonce() -> None:
    sender, receiver = CipherState(b"k" * 32), CipherState(b"k" * 32)
    ciphertext = sender.encrypt_with_ad(b"", b"payload")
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(AuthenticationFailed):
        receiver.decrypt_with_ad(b"", tampered)
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"", ciphertext) == b"payload"
    assert receiver.n == 1


def test_rekey_changes_the_key_on_both_sides() -> None:
    a, b = CipherState(b"k" * 32), CipherState(b"k" * 32)
    a.rekey()
    b.rekey()
    assert a.key == b.key != b"k" * 32


# -- records -----------------------------------------------------------------------------


def _records(**kw: int) -> tuple[RecordSender, RecordReceiver]:
    key = b"r" * 32
    return RecordSender(CipherState(key), **kw), RecordReceiver(CipherState(key), **kw)


def test_records_round_trip_and_rekey_in_step() -> None:
    sender, receiver = _records(rekey_interval=3)
    for i in range(10):
        assert receiver.open(sender.seal(b"m%d" % i)) == b"m%d" % i
    assert receiver.counter == sender.counter == 10


def test_replayed_reordered_modified_records_are_refused() -> None:
    sender, receiver = _records()
    first, second, third = (sender.seal(b"x") for _ in range(3))
    receiver.open(first)
    with pytest.raises(ReplayedRecord):
        receiver.open(first)
    with pytest.raises(ReorderedRecord):
        receiver.open(third)
    modified = second[:-1] + bytes([second[-1] ^ 0x80])
    with pytest.raises(AuthenticationFailed):
        receiver.open(modified)
    assert receiver.counter == 1  # nothing that failed moved the counter
    assert receiver.open(second) == b"x"


def test_short_and_oversized_records() -> None:
    sender, receiver = _records(max_record=100)
    with pytest.raises(MalformedRecord):
        receiver.open(b"short")
    with pytest.raises(OversizedRecord):
        receiver.open(b"\x00" * 101)
    with pytest.raises(UsageError):
        sender.seal(b"z" * 100)


# -- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        Data(1, 0, b"p"),
        Data(2**64 - 2, 5, b""),
        DataRun(3, 2, (b"a", b"", b"ccc")),
        Ack(7),
        Ping(1, 2),
        Pong(3, 4),
        Close(1, "logout"),
    ],
)
def test_frames_round_trip(frame: object) -> None:
    assert decode_frame(encode_frame(frame)) == frame  # type: ignore[arg-type]


_RUN_HEAD = bytes([6]) + (1).to_bytes(8, "big") + (0).to_bytes(8, "big")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x09",
        b"\x01\x00",
        b"\x02" + b"\x00" * 9,
        b"\x05",
        _RUN_HEAD,  # no count
        _RUN_HEAD + b"\x00\x00",  # an empty run
        _RUN_HEAD + b"\x00\x02" + b"\x00\x00\x00\x01a",  # says 2 items, has 1
        _RUN_HEAD + b"\x00\x01" + b"\x00\x00\x00\x09abc",  # an item past the end
        _RUN_HEAD + b"\x00\x01" + b"\x00\x00\x00\x01ab",  # bytes after the last item
        bytes([6]) + (2**64 - 1).to_bytes(8, "big") + bytes(8) + b"\x00\x02" + bytes(8),
    ],
)
def test_malformed_frames(raw: bytes) -> None:
    with pytest.raises(MalformedRecord):
        decode_frame(raw)


def test_a_data_run_refuses_to_encode_empty() -> None:
    with pytest.raises(UsageError):
        encode_frame(DataRun(1, 0, ()))


# -- queue and channel -------------------------------------------------------------------


def test_queue_full_refuses_and_keeps_everything() -> None:
    queue = OutageQueue(max_count=3)
    for seq in (1, 2, 3):
        queue.put(seq, b"c")
    with pytest.raises(QueueFull) as info:
        queue.put(4, b"c")
    assert info.value.depth == 3 and "full" in str(info.value)
    assert [s for s, _ in queue.items()] == [1, 2, 3]


def test_queue_byte_bound_and_sealing() -> None:
    queue = OutageQueue(max_bytes=200)
    queue.put(1, b"secret-payload")
    sealed = next(iter(queue._storage.items()))[1]
    assert b"secret-payload" not in sealed
    with pytest.raises(QueueFull):
        queue.put(2, b"x" * 300)


def test_channel_dedup_gap_and_rewind() -> None:
    channel = ReliableChannel(OutageQueue(), window=2)
    for i in range(5):
        channel.submit(b"%d" % i)
    assert [s for s, _ in channel.take_sendable()] == [1, 2]  # the window holds
    assert channel.on_ack(1) == 1
    assert [s for s, _ in channel.take_sendable()] == [3]
    channel.rewind(1)  # a new link: everything after the peer's cursor again
    assert [s for s, _ in channel.take_sendable()] == [2, 3]
    with pytest.raises(MalformedRecord):
        channel.on_ack(4)  # an ack for something never sent on this link
    assert channel.on_data(1, b"a") and not channel.on_data(1, b"a")
    with pytest.raises(ReorderedRecord):
        channel.on_data(3, b"c")


def test_channel_follows_a_peer_cursor_ahead_after_a_restart() -> None:
    # The phone restored from a state saved before its last pushes: the peer is ahead.
    channel = ReliableChannel(OutageQueue(), next_seq=2, may_renumber=True)
    channel.submit(b"snapshot")
    channel.rewind(7)
    assert channel.take_sendable() == [(8, b"snapshot")] and channel.lost == 0


def test_channel_renumbers_after_a_lossy_restart() -> None:
    # A restored phone whose push queue did not survive: its pushes are idempotent
    # state, so they take the numbers that follow the station's cursor.
    channel = ReliableChannel(OutageQueue(), next_seq=11, may_renumber=True)
    channel.submit(b"new")
    channel.rewind(4)
    assert channel.take_sendable() == [(5, b"new")] and channel.lost == 6


def test_backoff_is_bounded_and_jittered() -> None:
    delays = reconnect_delays(rng=random.Random(1))
    values = [next(delays) for _ in range(50)]
    assert all(0 <= d <= 1.0 for d in values)
    assert len(set(values)) > 40
    assert max(values[:3]) <= 0.2


# -- offers, codes, identity --------------------------------------------------------------


def test_offer_uri_round_trip() -> None:
    offer, _ = new_offer("Clinic Ω", [("10.0.0.5", 8765), ("fe80::1", 9)], now=100, ttl=30)
    assert PairingOffer.from_uri(offer.to_uri()) == offer
    assert not offer.is_expired(129) and offer.is_expired(130)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda u: u.replace("fieldstation://", "http://"), "not a fieldstation"),
        (lambda u: u.replace("v=2", "v=9"), "unsupported version 9"),
        (lambda u: u.replace("&x=", "&y="), "missing expiry"),
        (lambda u: u + "&v=2", "given twice"),
        (lambda u: u.replace(":8765", ":70000"), "port"),
        (lambda u: u.replace("k=", "k=AA"), "offer key"),
        (lambda u: u.replace("s=", "s=!"), "secret"),
        (lambda u: re.sub(r"&a=[^&]*", "", u), "no station address"),
        (lambda u: u + "&z=" + "q" * 1100, "longer than"),
    ],
)
def test_malformed_uris_say_what_is_wrong(mutate: object, message: str) -> None:
    offer, _ = new_offer("Clinic", [("10.0.0.5", 8765)], now=100, ttl=30)
    with pytest.raises(OfferFormatError, match=message):
        PairingOffer.from_uri(mutate(offer.to_uri()))  # type: ignore[operator]


def test_codes() -> None:
    code = generate_code()
    assert normalize_code(code.replace("-", " ")) == code and len(code) == 9
    for bad in ("1234-567", "abcd-efgh", "١٢٣٤٥٦٧٨"):
        with pytest.raises(OfferFormatError):
            normalize_code(bad)


def test_spake2_agrees_only_on_the_same_code() -> None:
    def run(a: str, b: str) -> tuple[bytes, bytes]:
        phone, station = CodeExchange(a, initiator=True), CodeExchange(b, initiator=False)
        m1, m2 = phone.start(), station.start()
        return phone.finish(m2), station.finish(m1)

    k1, k2 = run("1234-5678", "1234-5678")
    assert k1 == k2 and len(k1) == 32
    k3, k4 = run("1234-5678", "1234-5679")
    assert k3 != k4
    exchange = CodeExchange("1234-5678", initiator=True)
    exchange.start()
    with pytest.raises(HandshakeFailed):
        exchange.finish(b"\x00" * 33)


def test_spake2_package_published_vectors() -> None:
    # The spake2 package ships its compatibility vectors as tests; run them here.
    import unittest

    from spake2.test import test_compat

    suite = unittest.defaultTestLoader.loadTestsFromModule(test_compat)
    result = unittest.TestResult()
    suite.run(result)
    assert result.testsRun > 0 and result.wasSuccessful(), result.failures + result.errors


def test_identity_signature_binds_the_hash() -> None:
    identity = PhoneIdentity.generate()
    signature = identity.sign_handshake(b"h" * 64)
    assert verify_handshake(identity.public_key, b"h" * 64, signature) == identity.fingerprint
    with pytest.raises(HandshakeFailed):
        verify_handshake(identity.public_key, b"g" * 64, signature)
    assert PhoneIdentity.from_seed(identity.seed).fingerprint == identity.fingerprint
