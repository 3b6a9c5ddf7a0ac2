"""Property tests: whatever the seeded schedule of faults, every message reaches the
application exactly once and in order, in both directions; nothing replayed or
modified ever reaches it; a wrong psk or code never completes a handshake."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tunnel.helpers import make_pair, paired, received
from tunnel.errors import HandshakeFailed
from tunnel.events import PairingFailed, Settings
from tunnel.identity import PhoneIdentity
from tunnel.noise import HandshakeState
from tunnel.session import PhoneEndpoint
from tunnel.testing.pair_faults import FaultRates, PairFaults

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    sends=st.lists(st.sampled_from(["station", "phone"]), min_size=1, max_size=120),
    rates=st.builds(
        FaultRates,
        drop=st.floats(0, 2),
        cut=st.floats(0, 2),
        blackhole=st.floats(0, 0.5),
        delay=st.floats(0, 2),
        duplicate=st.floats(0, 2),
        reorder=st.floats(0, 2),
        tamper=st.floats(0, 2),
    ),
    manual_ack=st.booleans(),
)
def test_exactly_once_in_order_under_any_faults(
    seed: int, sends: list[str], rates: FaultRates, manual_ack: bool
) -> None:
    phone_settings = Settings(auto_ack=not manual_ack)
    pair = paired(phone_settings=phone_settings).pair
    link = PairFaults(pair, seed, rates)
    to_phone: list[bytes] = []
    to_station: list[bytes] = []
    for i, who in enumerate(sends):
        payload = b"%s-%d" % (who.encode(), i)
        if who == "station":
            pair.station.send(payload, pair.now)
            to_phone.append(payload)
        else:
            pair.phone.send(payload, pair.now)
            to_station.append(payload)
        for _ in range(link.rng.randrange(4)):
            link.tick()
            if manual_ack:
                pair.phone.acknowledge(pair.phone.channel.delivered, pair.now)
    for _ in range(200):
        if link.heal(timeout=2.0):
            break
        if manual_ack:
            pair.phone.acknowledge(pair.phone.channel.delivered, pair.now)
    assert pair.phone.ended is None and pair.station.ended is None
    assert received(pair.phone_events) == to_phone
    assert received(pair.station_events) == to_station


@FAST
@given(psk_a=st.binary(min_size=32, max_size=32), psk_b=st.binary(min_size=32, max_size=32))
def test_a_wrong_psk_never_completes(psk_a: bytes, psk_b: bytes) -> None:
    name = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
    init = HandshakeState(name, initiator=True, psks=[psk_a])
    resp = HandshakeState(name, initiator=False, psks=[psk_b])
    try:
        resp.read_message(init.write_message(b"payload"))
        init.read_message(resp.write_message(b""))
    except HandshakeFailed:
        assert psk_a != psk_b
        return
    assert psk_a == psk_b and init.complete


@settings(max_examples=25, deadline=None)
@given(code=st.from_regex(r"\A[0-9]{4}-[0-9]{4}\Z"))
def test_a_wrong_code_never_pairs(code: str) -> None:
    setup = make_pair()
    pair = setup.pair
    if code == setup.station_offer.code:
        return
    pair.phone = PhoneEndpoint(Settings(), identity=PhoneIdentity.generate(), code=code)
    pair.connect()
    pair.transfer()
    assert not pair.station.linked and pair.station.session_id is None
    assert any(isinstance(e, PairingFailed) for e in pair.station_events)


@FAST
@given(seed=st.integers(0, 2**32), position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_modified_record_never_reaches_the_application(
    seed: int, position: int, bit: int
) -> None:
    pair = paired().pair
    for i in range(5):
        pair.station.send(b"m%d" % i, pair.now)
    pair._collect()
    assert pair.current is not None
    queue = pair.current.to_phone
    index = seed % len(queue)
    data = bytearray(queue[index])
    data[position % len(data)] ^= 1 << bit
    queue[index] = bytes(data)
    pair.transfer()
    got = received(pair.phone_events)
    assert got == [b"m%d" % i for i in range(len(got))]  # a clean prefix, nothing forged
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"m%d" % i for i in range(5)]
