"""The states a session and its transports go through, and the tables that allow them.

First the tables themselves (``tunnel.states``): every allowed transition leads where the
table says, every other one raises ``ImpossibleTransition`` (our bug, a ``UsageError``),
and neither machine has a dead end. Then the real endpoints, driven through a
``ConnectionPair``, walking those states; and a check that together they take every
transition the tables allow, so the tables hold nothing the code never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

import pytest

import tunnel.conn
import tunnel.endpoint
from tests.tunnel.helpers import make_pair, paired
from tunnel.errors import SessionClosed, UsageError
from tunnel.events import LogoutRequested, PairingFailed, SessionEnded
from tunnel.session import PhoneEndpoint
from tunnel.settings import Settings
from tunnel.states import (
    SESSION_TRANSITIONS,
    TRANSPORT_TRANSITIONS,
    ImpossibleTransition,
    SessionEvent,
    SessionState,
    TransportEvent,
    TransportState,
    transition,
)
from tunnel.testing.pair import ConnectionPair

S = SessionState
E = SessionEvent

TABLES: dict[str, Any] = {"session": SESSION_TRANSITIONS, "transport 1": TRANSPORT_TRANSITIONS}
MACHINES = {
    "session": (SessionState, SessionEvent),
    "transport 1": (TransportState, TransportEvent),
}


def _allowed() -> Iterator[tuple[str, Enum, Enum, Enum]]:
    for machine, table in TABLES.items():
        for state, row in table.items():
            for event, new in row.items():
                yield machine, state, event, new


def _impossible() -> Iterator[tuple[str, Enum, Enum]]:
    for machine, (states, events) in MACHINES.items():
        for state in states:
            for event in events:
                if event not in TABLES[machine][state]:
                    yield machine, state, event


def _id(value: object) -> str:
    return getattr(value, "name", str(value))


# -- the tables --------------------------------------------------------------------------


@pytest.mark.parametrize(("machine", "state", "event", "new"), list(_allowed()), ids=_id)
def test_an_allowed_transition_leads_where_the_table_says(
    machine: str, state: Enum, event: Enum, new: Enum
) -> None:
    assert transition(TABLES[machine], state, event, machine) is new


@pytest.mark.parametrize(("machine", "state", "event"), list(_impossible()), ids=_id)
def test_any_other_transition_is_impossible_and_says_which(
    machine: str, state: Enum, event: Enum
) -> None:
    with pytest.raises(ImpossibleTransition) as raised:
        transition(TABLES[machine], state, event, machine)
    assert str(raised.value) == f"{machine}: cannot handle {event.name} in state {state.name}"
    assert (raised.value.machine, raised.value.state, raised.value.event) == (
        machine,
        state,
        event,
    )
    assert isinstance(raised.value, UsageError)  # our bug, never the peer's doing


def test_every_table_names_every_state() -> None:
    assert set(SESSION_TRANSITIONS) == set(SessionState)
    assert set(TRANSPORT_TRANSITIONS) == set(TransportState)


def _reachable(table: Any, start: Enum) -> set[Enum]:
    seen, todo = {start}, [start]
    while todo:
        for new in table[todo.pop()].values():
            if new not in seen:
                seen.add(new)
                todo.append(new)
    return seen


def test_no_dead_ends_every_state_is_reached_and_every_session_can_end() -> None:
    assert _reachable(SESSION_TRANSITIONS, S.PAIRING) == set(SessionState)
    assert _reachable(TRANSPORT_TRANSITIONS, TransportState.HANDSHAKE) == set(TransportState)
    for state in SessionState:
        assert S.ENDED in _reachable(SESSION_TRANSITIONS, state)
        # The application can always end the session at once (close without confirm).
        assert state is S.ENDED or SESSION_TRANSITIONS[state][E.CLOSE] is S.ENDED
    for state in TransportState:
        assert (
            state is TransportState.CLOSED
            or TransportEvent.CLOSED in (TRANSPORT_TRANSITIONS[state])
        )
    assert SESSION_TRANSITIONS[S.ENDED] == {} and TRANSPORT_TRANSITIONS[TransportState.CLOSED] == {}


# -- the endpoints walk them ---------------------------------------------------------------


def _states(pair: ConnectionPair) -> tuple[SessionState, SessionState]:
    return pair.phone.state, pair.station.state


def pairing_resume_and_confirmed_logout() -> None:
    pair = make_pair().pair
    assert _states(pair) == (S.PAIRING, S.PAIRING)
    pair.connect()
    pair.step()  # the hello authenticates under the offer: every offer closes
    assert _states(pair) == (S.PAIRING, S.CONFIRMING) and not pair.station.offer_open
    pair.step()  # ACCEPT: the phone's handshake is complete
    assert _states(pair) == (S.LINKED, S.CONFIRMING)
    pair.step()  # the phone's first record confirms it
    assert _states(pair) == (S.LINKED, S.LINKED)
    pair.cut()
    assert _states(pair) == (S.UNLINKED, S.UNLINKED)
    pair.connect()
    pair.transfer()
    assert _states(pair) == (S.LINKED, S.LINKED)
    pair.phone.close("remote", pair.now, confirm=True)
    assert _states(pair) == (S.LOGGING_OUT, S.LINKED)
    pair.transfer()  # the station answers our Close with its own
    assert _states(pair) == (S.ENDED, S.ENDED)
    assert [e.confirmed for e in pair.phone_events if isinstance(e, SessionEnded)] == [True]


def a_resume_on_a_second_transport_supersedes_the_first() -> None:
    pair = paired().pair
    old = pair.current
    pair.connect()  # the phone dials again while its old link still looks alive
    pair.transfer()
    assert _states(pair) == (S.LINKED, S.LINKED)  # down and up again, in one step
    assert old is not None and old.conn not in pair.transports  # closed: "superseded"


def a_logout_kept_owed_across_links() -> None:
    pair = paired().pair
    pair.phone.close("remote", pair.now, confirm=True)
    pair.phone.close("remote", pair.now, confirm=True)  # asked twice: the same logout
    pair.cut()  # before the Close got anywhere
    assert _states(pair) == (S.LOGGING_OUT, S.UNLINKED)
    assert pair.phone.logout_pending == "remote"
    with pytest.raises(SessionClosed):
        pair.phone.send(b"too late", pair.now)
    pair.connect()
    pair.transfer()  # the Close goes again on the new link, and is answered
    assert _states(pair) == (S.ENDED, S.ENDED) and pair.phone.logout_pending is None


def an_unlinked_phone_logs_out_of_a_session_the_station_ended() -> None:
    pair = paired().pair
    pair.cut()
    pair.phone.close("remote", pair.now, confirm=True)
    pair.station.close("inactivity", pair.now)
    assert _states(pair) == (S.LOGGING_OUT, S.ENDED)
    pair.connect()
    pair.transfer()  # the refusal is authenticated under our secret: the truth
    assert pair.phone.state is S.ENDED
    assert pair.phone.ended == "session ended at the station (inactivity)"


def a_station_that_ends_while_the_phone_is_away() -> None:
    pair = paired().pair
    pair.cut()
    pair.station.close("inactivity", pair.now)
    assert _states(pair) == (S.UNLINKED, S.ENDED)
    pair.connect()
    pair.transfer()
    assert pair.phone.state is S.ENDED


def a_station_that_ends_while_linked() -> None:
    pair = paired().pair
    pair.station.close("explicit", pair.now)
    pair.transfer()
    assert _states(pair) == (S.ENDED, S.ENDED)
    assert [e.by_peer for e in pair.phone_events if isinstance(e, SessionEnded)] == [True]


def a_logout_the_peer_asks_for_waits_for_the_last_words() -> None:
    pair = paired().pair
    pair.station.answer_close = False  # the station's worker: the receipt goes first
    pair.phone.close("remote", pair.now, confirm=True)
    pair.transfer()
    assert _states(pair) == (S.LOGGING_OUT, S.LOGOUT_REQUESTED)
    assert [e.reason for e in pair.station_events if isinstance(e, LogoutRequested)] == ["remote"]
    pair.cut()
    assert _states(pair) == (S.LOGGING_OUT, S.LOGOUT_REQUESTED)
    pair.connect()
    pair.transfer()  # the phone's Close again: asked already, not asked twice
    assert _states(pair) == (S.LOGGING_OUT, S.LOGOUT_REQUESTED)
    assert sum(isinstance(e, LogoutRequested) for e in pair.station_events) == 1
    pair.station.send(b"receipt", pair.now)  # last words may still be said
    pair.station.close("remote", pair.now)
    pair.transfer()
    assert _states(pair) == (S.ENDED, S.ENDED)
    assert [e.confirmed for e in pair.phone_events if isinstance(e, SessionEnded)] == [True]


def a_requested_logout_may_be_confirmed_instead() -> None:
    pair = paired().pair
    pair.station.answer_close = False
    pair.phone.close("remote", pair.now, confirm=True)
    pair.transfer()
    pair.station.close("remote", pair.now, confirm=True)
    assert pair.station.state is S.LOGGING_OUT
    pair.transfer()
    assert pair.phone.state is S.ENDED


def a_phone_gives_up_waiting_for_its_logout() -> None:
    pair = paired().pair
    pair.cut()
    pair.phone.close("remote", pair.now, confirm=True)
    pair.phone.close("gave up", pair.now)
    assert pair.phone.state is S.ENDED and pair.phone.ended == "gave up"


def a_pairing_cut_short_before_its_confirmation() -> None:
    pair = make_pair().pair
    pair.connect()
    pair.step()  # the hello authenticated; the ACCEPT is lost with the transport
    pair.cut()
    assert _states(pair) == (S.ENDED, S.PAIRING)  # offers are single use, on both sides
    assert any(isinstance(e, PairingFailed) for e in pair.station_events)
    assert any(isinstance(e, PairingFailed) for e in pair.phone_events)


def a_station_that_closes_before_or_while_pairing() -> None:
    idle = make_pair().pair
    idle.station.close("offer expired", idle.now)
    assert idle.station.state is S.ENDED
    confirming = make_pair().pair
    confirming.connect()
    confirming.step()
    confirming.station.close("shutdown", confirming.now)
    assert confirming.station.state is S.ENDED


def a_phone_restarted_from_its_saved_state() -> None:
    pair = paired().pair
    again = PhoneEndpoint(Settings(), state=pair.phone.export_state())
    assert again.state is S.UNLINKED and again.wants_transport


SCENARIOS: list[Callable[[], None]] = [
    pairing_resume_and_confirmed_logout,
    a_resume_on_a_second_transport_supersedes_the_first,
    a_logout_kept_owed_across_links,
    an_unlinked_phone_logs_out_of_a_session_the_station_ended,
    a_station_that_ends_while_the_phone_is_away,
    a_station_that_ends_while_linked,
    a_logout_the_peer_asks_for_waits_for_the_last_words,
    a_requested_logout_may_be_confirmed_instead,
    a_phone_gives_up_waiting_for_its_logout,
    a_pairing_cut_short_before_its_confirmation,
    a_station_that_closes_before_or_while_pairing,
    a_phone_restarted_from_its_saved_state,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_the_endpoints_walk_the_states(scenario: Callable[[], None]) -> None:
    scenario()


def test_a_confirmed_logout_needs_a_session_and_changes_nothing_when_refused() -> None:
    pair = make_pair().pair
    pair.connect()
    pair.collect()
    with pytest.raises(
        ImpossibleTransition, match="session: cannot handle LOGOUT in state PAIRING"
    ):
        pair.phone.close("remote", pair.now, confirm=True)
    assert pair.phone.state is S.PAIRING and not pair.phone.has_output
    pair.transfer()  # and pairing goes on
    assert _states(pair) == (S.LINKED, S.LINKED)


def test_the_endpoints_take_every_transition_the_tables_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: set[tuple[str, Enum, Enum]] = set()

    def recording(table: Any, state: Any, event: Any, machine: str) -> Any:
        new = transition(table, state, event, machine)
        taken.add(("session" if machine == "session" else "transport 1", state, event))
        return new

    monkeypatch.setattr(tunnel.endpoint, "transition", recording)
    monkeypatch.setattr(tunnel.conn, "transition", recording)
    for scenario in SCENARIOS:
        scenario()
    allowed = {(machine, state, event) for machine, state, event, _ in _allowed()}
    assert allowed - taken == set(), "allowed, but no endpoint ever does it"
    assert taken <= allowed
