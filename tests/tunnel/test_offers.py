"""Offers spent only by whoever knows them, the previous offer's grace, code slots and the
code back-off: the station's pairing rules, driven by ``now`` through the core."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tunnel.helpers import make_pair, station_offer
from tunnel.events import CodePaused, OfferRotated, Paired, PairingFailed
from tunnel.flights import WIRE_VERSION, Hello, MessageType
from tunnel.handshake import PhonePairByCode, PhonePairByUri, parse_refusal
from tunnel.identity import PhoneIdentity
from tunnel.offer import PairingOffer
from tunnel.open_offers import CodeBackoff, OpenOffers
from tunnel.refusal import RefuseCode
from tunnel.session import PhoneEndpoint
from tunnel.settings import Settings
from tunnel.station_endpoint import CODE_HELLO_BURST, StationEndpoint
from tunnel.station_handshake import StationCodePairing, StationOffer
from tunnel.testing.pair import PHONE, STATION, ConnectionPair


def _attack(pair: ConnectionPair, message: bytes) -> list[bytes]:
    """An attacker's transport: one message to the station; what it answered."""
    conn = pair.connect(phone=False)
    t = pair.transports[conn]
    pair.inject(STATION, message, conn)
    pair.transfer()
    return [d for dest, d in t.carried if dest == PHONE]


def _uri_phone(offer: PairingOffer) -> PhoneEndpoint:
    return PhoneEndpoint(
        Settings(),
        identity=PhoneIdentity.generate(),
        uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
    )


def _code_phone(code: str) -> PhoneEndpoint:
    return PhoneEndpoint(Settings(), identity=PhoneIdentity.generate(), code=code)


class Rotating:
    """A station whose offers rotate every ``ttl`` s of ``now``; the offers it showed."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.offers: list[tuple[PairingOffer, StationOffer]] = []
        first = self.make()
        self.station = StationEndpoint(
            Settings(), station="Clinic", offer=first, make_offer=self.make, offer_ttl=ttl
        )

    def make(self) -> StationOffer:
        self.offers.append(station_offer())
        return self.offers[-1][1]

    def pair_with(self, phone: PhoneEndpoint) -> ConnectionPair:
        return ConnectionPair(phone, self.station)


# -- spent only by whoever knows it --------------------------------------------------


def test_a_uri_hello_without_the_offer_secret_spends_nothing() -> None:
    setup = make_pair()
    pair = setup.pair
    offer = setup.offer
    wrong_psk = b"\x01" * 32
    forged = PhonePairByUri(PhoneIdentity.generate(), offer.offer_id, offer.public_key, wrong_psk)
    answers = _attack(pair, forged.first_message())
    assert parse_refusal(answers[0]).code is RefuseCode.HANDSHAKE_FAILED
    assert pair.station.offer_open
    assert not any(isinstance(e, PairingFailed) for e in pair.station_events)  # no line each
    pair.connect()  # the medic who scanned the QR code pairs undisturbed
    pair.transfer()
    assert pair.phone.linked and pair.station.linked


def test_junk_code_hellos_spend_nothing() -> None:
    setup = make_pair()
    pair = setup.pair
    code = setup.station_offer.code
    # Version 1's offer-burning hello, and malformed version 2 ones.
    for junk in (
        bytes([MessageType.PAIR_CODE, 1]) + b"\x00" * 33,
        bytes([MessageType.PAIR_CODE, WIRE_VERSION]) + b"\x00" * 33,
        bytes([MessageType.PAIR_CODE, WIRE_VERSION, 1]) + b"\x07" * 33,
    ):
        answer = parse_refusal(_attack(pair, junk)[0])
        assert answer.code in (RefuseCode.VERSION, RefuseCode.MALFORMED), answer
    # A complete SPAKE2 exchange abandoned before its guess: not a guess either.
    abandoned = PhonePairByCode(PhoneIdentity.generate(), "1234-5678")
    assert _attack(pair, abandoned.first_message())[0][0] == MessageType.CODE_REPLY
    assert pair.station.offers.open_codes(pair.now)[0][1] == code
    assert not any(isinstance(e, CodePaused) for e in pair.station_events)
    pair.phone = _code_phone(code)
    pair.connect()
    pair.transfer()
    assert pair.phone.linked and pair.station.linked


def test_a_used_offer_never_works_twice() -> None:
    rotating = Rotating()
    offer = rotating.offers[0][0]
    pair = rotating.pair_with(_uri_phone(offer))
    pair.connect()
    pair.transfer()
    assert pair.station.linked
    again = _uri_phone(offer)
    pair.phone = again
    pair.connect()
    pair.transfer()
    assert again.ended is not None and "offer already used" in again.ended


def test_a_pairing_that_authenticated_but_never_completed_opens_a_fresh_offer() -> None:
    rotating = Rotating()
    offer = rotating.offers[0][0]
    pair = rotating.pair_with(_uri_phone(offer))
    pair.connect()
    pair.step()  # the hello authenticates: the offer is spent, ACCEPT waits for the phone
    assert not pair.station.offer_open
    pair.cut()
    rotated = [e for e in pair.station_events if isinstance(e, OfferRotated)]
    assert len(rotated) == 1 and rotated[0].offer_id == rotating.offers[1][0].offer_id
    assert pair.station.offer_open
    late = _uri_phone(offer)
    pair.phone = late
    pair.connect()
    pair.transfer()
    assert late.ended is not None and not pair.station.linked


# -- the previous offer's grace --------------------------------------------------------


@pytest.mark.parametrize("by", ["uri", "code"])
@pytest.mark.parametrize(("after", "pairs"), [(0.5, True), (9.5, True), (10.5, False)])
def test_the_previous_offer_works_for_10_s_after_it_rotates(
    by: str, after: float, pairs: bool
) -> None:
    rotating = Rotating(ttl=30.0)
    old_offer, old_station_offer = rotating.offers[0]
    phone = _uri_phone(old_offer) if by == "uri" else _code_phone(old_station_offer.code)
    pair = rotating.pair_with(phone)
    pair.advance(29.5)
    assert not any(isinstance(e, OfferRotated) for e in pair.station_events)
    pair.advance(0.5)  # the rotation, at `now` = 30
    rotated = [e for e in pair.station_events if isinstance(e, OfferRotated)]
    assert len(rotated) == 1 and rotated[0].previous_id == old_offer.offer_id
    pair.advance(after)
    pair.connect()
    pair.transfer()
    assert phone.linked is pairs and pair.station.linked is pairs
    if not pairs:
        assert phone.ended is not None
        assert ("wrong or expired code" if by == "code" else "expired offer") in phone.ended


def test_the_current_offer_paired_just_before_its_rotation() -> None:
    rotating = Rotating(ttl=30.0)
    phone = _code_phone(rotating.offers[0][1].code)
    pair = rotating.pair_with(phone)
    pair.advance(29.5)
    pair.connect()
    pair.transfer()
    assert phone.linked and pair.station.linked
    pair.advance(5)
    assert not any(isinstance(e, OfferRotated) for e in pair.station_events)  # paired: over


def test_offer_rotation_is_a_deadline_not_a_sleep() -> None:
    rotating = Rotating(ttl=30.0)
    station = rotating.station
    assert station.next_deadline() == 30.0
    station.handle_timer(29.9)
    assert station.events() == []
    station.handle_timer(30.0)
    assert [type(e) for e in station.events()] == [OfferRotated]
    assert station.next_deadline() == 40.0  # the previous offer's grace ends first
    station.handle_timer(40.0)
    assert station.offers.previous is None and station.next_deadline() == 60.0


# -- code slots ------------------------------------------------------------------------


def _slot_attempt(codes: list[tuple[int, str]], typed: str) -> tuple[tuple[int, ...], bool]:
    station = StationCodePairing(b"s" * 16, "Clinic")
    phone = PhonePairByCode(PhoneIdentity.generate(), typed)
    hello = phone.first_message()
    parsed = Hello(MessageType.PAIR_CODE, hello[1], b"", hello[2:])
    reply = station.receive_hello(parsed, codes)
    noise, _ = phone.receive(reply)
    assert noise is not None
    _, attempt = station.receive(noise)
    guess = attempt.evaluate(lambda serial: True)
    return guess.evaluated, guess.accepted is not None


def test_one_slot_per_open_code_one_guess_each() -> None:
    codes = [(7, "1111-1111"), (5, "2222-2222")]
    assert _slot_attempt(codes, "1111-1111") == ((7,), True)
    assert _slot_attempt(codes, "2222-2222") == ((7, 5), True)
    assert _slot_attempt(codes, "3333-3333") == ((7, 5), False)
    assert _slot_attempt(codes[:1], "2222-2222") == ((7,), False)


def test_a_code_closed_between_hello_and_guess_is_never_evaluated() -> None:
    station = StationCodePairing(b"s" * 16, "Clinic")
    phone = PhonePairByCode(PhoneIdentity.generate(), "1111-1111")
    hello = phone.first_message()
    reply = station.receive_hello(
        Hello(MessageType.PAIR_CODE, hello[1], b"", hello[2:]), [(1, "1111-1111")]
    )
    noise, _ = phone.receive(reply)
    assert noise is not None
    _, attempt = station.receive(noise)
    guess = attempt.evaluate(lambda serial: False)
    assert guess.evaluated == () and guess.accepted is None


def test_parallel_guesses_count_once_then_find_their_code_burnt() -> None:
    """Many exchanges opened at once cannot be cashed in as many guesses."""
    setup = make_pair()
    pair = setup.pair
    attempts = []
    for n in range(5):
        phone = PhonePairByCode(PhoneIdentity.generate(), f"0000-000{n}")
        conn = pair.connect(phone=False)
        pair.inject(STATION, phone.first_message(), conn)
        pair.transfer()
        reply = next(d for dest, d in pair.transports[conn].carried if dest == PHONE)
        noise, _ = phone.receive(reply)
        assert noise is not None
        attempts.append((conn, noise))
    for conn, noise in attempts:
        pair.inject(STATION, noise, conn)
    pair.transfer()
    paused = [e for e in pair.station_events if isinstance(e, CodePaused)]
    assert len(paused) == 1 and paused[0].failures == 1


def test_code_hellos_beyond_the_rate_are_busy_before_any_pake_work() -> None:
    setup = make_pair()
    pair = setup.pair
    answers = []
    for _ in range(int(CODE_HELLO_BURST) + 1):
        hello = PhonePairByCode(PhoneIdentity.generate(), "1234-5678").first_message()
        answers.append(_attack(pair, hello)[0][0])
    assert answers[:-1] == [MessageType.CODE_REPLY] * int(CODE_HELLO_BURST)
    assert answers[-1] == MessageType.REFUSE
    pair.advance(1.0)
    hello = PhonePairByCode(PhoneIdentity.generate(), "1234-5678").first_message()
    assert _attack(pair, hello)[0][0] == MessageType.CODE_REPLY


def test_while_codes_pause_the_qr_code_pairs_at_once() -> None:
    setup = make_pair(code="0000-0001")
    pair = setup.pair
    if setup.station_offer.code == "0000-0001":
        pytest.skip("the random code happened to match")
    pair.connect()
    pair.transfer()
    paused_for = pair.station.offers.paused_for(pair.now)
    assert paused_for == 4.0
    typed = _code_phone(pair.station.offers.open_codes(pair.now + 5)[0][1])
    pair.phone = typed
    pair.connect()
    pair.transfer()
    assert typed.ended is not None and "code pairing paused for 4 s" in typed.ended
    assert "scan the QR code" in typed.ended
    pair.phone = _uri_phone(setup.offer)
    pair.connect()
    pair.transfer()
    assert pair.phone.linked and any(isinstance(e, Paired) for e in pair.station_events)


# -- the back-off ------------------------------------------------------------------------


def test_backoff_grows_caps_and_forgets() -> None:
    backoff = CodeBackoff()
    now, pauses = 0.0, []
    for _ in range(7):
        pauses.append(backoff.failed(now))
        now += pauses[-1]
    assert pauses == [4, 8, 16, 32, 60, 60, 60]
    assert backoff.failed(now + 601) == 4  # a quiet 10 minutes: a new streak


def _greedy_attacker(seconds: float, *, ttl: float = 30.0) -> list[float]:
    """Guess the moment code pairing allows it, against every open code; the times of
    each guess. Pure bookkeeping: the same OpenOffers the station runs."""

    def make() -> StationOffer:
        return station_offer()[1]

    offers = OpenOffers(make(), 0.0, make_offer=make, ttl=ttl)
    now, guesses = 0.0, []
    while now < seconds:
        offers.handle_timer(now)
        codes = offers.open_codes(now)
        if codes:
            guesses += [now] * len(codes)
            offers.code_failed(tuple(s for s, _ in codes), now)
        deadline = offers.next_deadline() or now + 1
        now = min(deadline, now + max(offers.paused_for(now), 0.01))
    return guesses


def _most_in_a_minute(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 60) for t in times)


def test_a_greedy_attacker_gets_at_most_7_guesses_a_minute_and_under_1e4_a_day() -> None:
    day = _greedy_attacker(86_400)
    print(f"greedy attacker: {len(day)} guesses a day, at most {_most_in_a_minute(day)} a minute")
    assert _most_in_a_minute(day) <= 7
    # 8 digits: 1e8 codes. Fewer than 1e4 guesses a day is less than a 1e-4 chance.
    assert len(day) < 10_000
    late = [t for t in day if t >= 3600]
    assert len(late) / ((86_400 - 3600) / 60) <= 2.0  # sustained: at most 2 a minute


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=45.0), min_size=1, max_size=40))
def test_any_attacker_schedule_stays_within_7_guesses_a_minute(waits: list[float]) -> None:
    """Whatever the attacker waits between tries (aiming at grace windows or not), a
    guess is counted only when the station evaluates it, and that is bounded."""

    def make() -> StationOffer:
        return station_offer()[1]

    offers = OpenOffers(make(), 0.0, make_offer=make, ttl=30.0)
    now, guesses = 0.0, []
    for wait in waits:
        target = now + wait
        while (deadline := offers.next_deadline()) is not None and deadline <= target:
            offers.handle_timer(deadline)
        now = target
        offers.handle_timer(now)
        codes = offers.open_codes(now)
        if codes:
            guesses += [now] * len(codes)
            offers.code_failed(tuple(s for s, _ in codes), now)
    if guesses:
        assert _most_in_a_minute(guesses) <= 7


def test_a_new_standby_carries_the_streak_so_pairings_do_not_reset_it() -> None:
    """Each medic who pairs leaves a new worker (new offers); the supervisor hands it the
    wrong-code streak, so an attacker gains nothing from pairings: 20 a minute here."""

    def make() -> StationOffer:
        return station_offer()[1]

    now, guesses = 0.0, []
    streak, last, until = 0, 0.0, 0.0
    while now < 3600:
        backoff = CodeBackoff.carried_over(streak, now - last, until - now, now)
        offers = OpenOffers(make(), now, make_offer=make, ttl=30.0, backoff=backoff)
        end = now + 3.0  # a medic pairs by QR code every 3 s: this worker is done
        while now < end:
            codes = offers.open_codes(now)
            if codes:
                guesses.append(now)
                pause = offers.code_failed(tuple(s for s, _ in codes), now)
                streak, last, until = backoff.streak, now, now + pause
            now = min(end, now + max(offers.paused_for(now), 0.01))
    print(f"with a pairing every 3 s: {len(guesses)} guesses in an hour")
    assert _most_in_a_minute(guesses) <= 7
    assert len(guesses) <= 65
