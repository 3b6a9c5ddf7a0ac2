"""Property tests, with every fault drawn by Hypothesis (so a failure shrinks to the few
faults that matter): whatever the network and an attacker do, every message reaches the
application exactly once and in order, both ways; nothing replayed, modified or made up
ever reaches it; a wrong psk or code never completes a handshake."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drill.faults import FaultEvent
from tests.tunnel.helpers import make_pair, paired, received
from tunnel.errors import HandshakeFailed
from tunnel.events import Acked, LinkUp, MessageReceived, Paired, PairingFailed, StateChanged
from tunnel.identity import PhoneIdentity
from tunnel.noise import HandshakeState
from tunnel.session import Endpoint, PhoneEndpoint, SessionState
from tunnel.settings import Settings
from tunnel.testing import STATION, Action, ConnectionPair, PairFaults, Wait
from tunnel.testing.strategies import actions

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(FAST, max_examples=100)


@THOROUGH
@given(
    script=st.lists(
        st.tuples(
            st.sampled_from(["station", "phone"]),
            st.lists(st.tuples(actions(), st.booleans()), min_size=1, max_size=3),
        ),
        min_size=20,
        max_size=120,
    ),
    manual_ack=st.booleans(),
)
@example(  # delivered, not yet acknowledged, then a cut: the resume resends, the phone drops
    script=[
        ("station", [(Wait(0.1), False)]),
        ("station", [(FaultEvent("cut", 0.0), False), (Wait(0.1), False)]),
    ],
    manual_ack=True,
)
def test_exactly_once_in_order_under_any_faults(
    script: list[tuple[str, list[tuple[Action, bool]]]], manual_ack: bool
) -> None:
    """With ``manual_ack`` the phone's application acknowledges only now and then (after
    the actions drawn with True), so resumes resend what it already has."""
    pair = paired(phone_settings=Settings(auto_ack=not manual_ack)).pair
    faults = PairFaults(pair)
    to_phone: list[bytes] = []
    to_station: list[bytes] = []
    for i, (who, moves) in enumerate(script):
        payload = b"%s-%d" % (who.encode(), i)
        if who == "station":
            pair.station.send(payload, pair.now)
            to_phone.append(payload)
        else:
            pair.phone.send(payload, pair.now)
            to_station.append(payload)
        for action, ack in moves:
            faults.act(action)
            if manual_ack and ack:
                pair.phone.acknowledge(pair.phone.channel.delivered, pair.now)
    for _ in range(200):
        if faults.heal(timeout=2.0):
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
@given(index=st.integers(0, 4), position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_modified_record_never_reaches_the_application(
    index: int, position: int, bit: int
) -> None:
    pair = paired().pair
    for i in range(5):
        pair.station.send(b"m%d" % i, pair.now)
    pair.collect()
    assert pair.current is not None
    queue = pair.current.to_phone
    index %= len(queue)
    data = bytearray(queue[index])
    data[position % len(data)] ^= 1 << bit
    queue[index] = bytes(data)
    pair.transfer()
    got = received(pair.phone_events)
    assert got == [b"m%d" % i for i in range(len(got))]  # a clean prefix, nothing forged
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"m%d" % i for i in range(5)]


# -- random input on any transport in any state -------------------------------------------------

# What only authenticated bytes may cause. Random input may close the transport it came
# on (LinkDown), fail a pairing (PairingFailed) or, on a resume, count as a clear-text
# refusal, which is advisory (documented in PROTOCOL.md): nothing else.
AUTHENTICATED_ONLY = (MessageReceived, Acked, Paired, LinkUp, StateChanged)


def _phone_pairing() -> tuple[ConnectionPair, Endpoint, int]:
    pair = make_pair().pair
    return pair, pair.phone, pair.connect()  # the phone's hello is on its way


def _station_offering() -> tuple[ConnectionPair, Endpoint, int]:
    pair = make_pair().pair
    return pair, pair.station, pair.connect(phone=False)  # a stranger's transport


def _phone_resuming() -> tuple[ConnectionPair, Endpoint, int]:
    pair = paired().pair
    pair.cut()
    return pair, pair.phone, pair.connect()


def _station_unconfirmed() -> tuple[ConnectionPair, Endpoint, int]:
    pair = paired().pair
    pair.cut()
    conn = pair.connect()
    assert pair.step()  # the resume hello reaches the station: keys, not yet confirmed
    return pair, pair.station, conn


def _active(side: str) -> Callable[[], tuple[ConnectionPair, Endpoint, int]]:
    def reach() -> tuple[ConnectionPair, Endpoint, int]:
        pair = paired().pair
        for i in range(3):
            pair.station.send(b"s%d" % i, pair.now)
            pair.phone.send(b"p%d" % i, pair.now)
        pair.transfer()
        assert pair.current is not None
        return pair, pair.phone if side == "phone" else pair.station, pair.current.conn

    return reach


def _unknown_transport() -> tuple[ConnectionPair, Endpoint, int]:
    pair = paired().pair
    return pair, pair.station, 99


STATES = {
    "phone pairing": _phone_pairing,
    "station offering": _station_offering,
    "phone resuming": _phone_resuming,
    "station unconfirmed": _station_unconfirmed,
    "phone active": _active("phone"),
    "station active": _active("station"),
    "unknown transport": _unknown_transport,
}


def _genuine(pair: ConnectionPair) -> tuple[list[bytes], list[bytes]]:
    """Messages the network already delivered (fit to replay) and ones still in flight
    (only ever fed modified: delivering them as they are is the network's job)."""
    pair.collect()
    carried = [data for t in pair.transports.values() for _, data in t.carried]
    pending = [d for t in pair.transports.values() for d in (*t.to_phone, *t.to_station)]
    return carried, [d for d in pending if d]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.sampled_from(sorted(STATES)), data=st.data())
def test_random_bytes_on_any_transport_in_any_state_are_refused_quietly(
    state: str, data: st.DataObject
) -> None:
    pair, endpoint, conn = STATES[state]()
    carried, pending = _genuine(pair)
    endpoint.events()  # what the state's own set-up produced
    delivered = endpoint.channel.delivered
    saved = pair.phone.export_state() if pair.phone.session_id is not None else None
    replayed = st.sampled_from(carried) if carried else st.nothing()
    modified = (
        st.tuples(st.sampled_from(pending + carried), st.integers(0, 1 << 16), st.integers(0, 7))
        if pending or carried
        else st.nothing()
    ).map(lambda t: _flip(*t))
    truncated = st.tuples(st.sampled_from(carried or [b""]), st.integers(0, 200)).map(
        lambda t: t[0][: t[1]]
    )
    typed = st.tuples(st.integers(0, 255), st.binary(max_size=120)).map(
        lambda t: bytes([t[0]]) + t[1]
    )
    chunks = data.draw(
        st.lists(
            st.one_of(st.binary(max_size=200), typed, replayed, modified, truncated),
            min_size=1,
            max_size=4,
        )
    )
    for chunk in chunks:
        endpoint.receive(conn, chunk, pair.now)  # never raises, whatever the bytes
    events = endpoint.events()
    assert not [e for e in events if isinstance(e, AUTHENTICATED_ONLY)], events
    assert endpoint.channel.delivered == delivered
    if saved is not None:
        assert pair.phone.export_state() == saved  # no secret ratcheted, no cursor moved
    if saved is not None and pair.phone.ended is None and pair.station.ended is None:
        # Whatever the input did to this transport, the session carries on.
        pair.station.send(b"after", pair.now)
        assert PairFaults(pair).heal(timeout=30)
        assert received(pair.phone_events).count(b"after") == 1


def _flip(message: bytes, position: int, bit: int) -> bytes:
    flipped = bytearray(message)
    flipped[position % len(flipped)] ^= 1 << bit
    return bytes(flipped)


def test_the_states_are_what_their_names_say() -> None:
    """The random-input test reaches each state it names (a check on the test itself)."""
    pair, station, conn = STATES["station unconfirmed"]()
    assert pair.phone.state is station.state is SessionState.UNLINKED
    assert conn in pair.transports and pair.transports[conn].to_phone  # the reply waits
    pair, phone, conn = STATES["phone resuming"]()
    assert phone.state is SessionState.UNLINKED and phone.session_id is not None
    assert pair.transports[conn].to_station  # the resume hello waits
    pair, phone, conn = STATES["phone pairing"]()
    assert phone.state is SessionState.PAIRING and pair.transports[conn].to_station
    pair, station, conn = STATES["station offering"]()
    assert station.state is SessionState.PAIRING and station.offer_open
    assert not pair.transports[conn].phone_attached
    for side in ("phone active", "station active"):
        pair, endpoint, conn = STATES[side]()
        assert endpoint.state is SessionState.LINKED and conn in pair.transports
    assert STATION  # the kit's names for the two ends
