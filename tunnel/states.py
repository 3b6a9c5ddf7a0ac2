"""The endpoint's states and what moves them, as data (in the manner of h11's ``_state.py``).

Two machines run inside every endpoint: one per transport (its handshake, its keys, its
turn as the session's link) and one for the session itself (pairing, linked or not,
logging out, ended). Each is a table, ``state -> event -> next state``, and one function,
``transition``, applies an event: it finds the row or raises ``ImpossibleTransition``.

Why tables rather than flags: the rules can be read, documented (docs/PROTOCOL.md's state
tables are checked against these) and tested exhaustively in one place, and no path
through the endpoint can invent a transition quietly. Before these tables the session's
state was spread over seven fields (``session_id``, ``ended``, ``_logout``,
``_logout_sent``, ``logout_requested``, ``_active``, ``_pairing``) whose combinations
nobody had listed.

The rules of this module, as in h11: everything that decides *which* state follows lives
here; nothing here knows about bytes, keys or time. The reasons and times that come with
a state (why it ended, when our Close last went) are data the endpoint keeps beside it.

An impossible transition is always our bug (a ``UsageError``), never the peer's doing:
the endpoint checks the state before it acts on anything the peer sent, so hostile bytes
are refused by the protocol code and never reach this table as an event it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final, TypeVar

from tunnel.errors import UsageError


class TransportState(Enum):
    """One transport (a WebSocket) inside an endpoint."""

    HANDSHAKE = "handshake"  # hello and replies; no keys yet
    OPEN = "open"  # keys agreed; on the station, not yet confirmed by the phone
    ACTIVE = "active"  # the session's link: data flows here, and only here
    CLOSED = "closed"


class TransportEvent(Enum):
    KEYS_AGREED = "keys agreed"  # the station answered an authenticated hello
    BECAME_LINK = "became the link"  # the phone completed, or the station was confirmed
    CLOSED = "closed"  # closed by us, failed, timed out or lost


_T = TransportState
_TE = TransportEvent

TRANSPORT_TRANSITIONS: Final[Mapping[TransportState, Mapping[TransportEvent, TransportState]]] = {
    # The phone's handshake ends at its last read: its next send already proves the keys,
    # so it goes straight to ACTIVE. The station learns the phone holds them only from its
    # first record, so an answered hello waits in OPEN (and a resume's new secret with it).
    _T.HANDSHAKE: {_TE.KEYS_AGREED: _T.OPEN, _TE.BECAME_LINK: _T.ACTIVE, _TE.CLOSED: _T.CLOSED},
    _T.OPEN: {_TE.BECAME_LINK: _T.ACTIVE, _TE.CLOSED: _T.CLOSED},
    _T.ACTIVE: {_TE.CLOSED: _T.CLOSED},
    # A transport is never reused: a new connection is a new transport.
    _T.CLOSED: {},
}


class SessionState(Enum):
    """The one logical session an endpoint carries across its transports."""

    PAIRING = "pairing"  # no session yet: the phone's handshakes, the station's offers
    CONFIRMING = "confirming"  # station: a pairing authenticated; the phone must confirm
    LINKED = "linked"  # paired, and one transport is the link
    UNLINKED = "unlinked"  # paired, no link: the phone resumes, the station waits
    LOGGING_OUT = "logging out"  # our Close waits for the peer's (``close(confirm=True)``)
    LOGOUT_REQUESTED = "logout requested"  # the peer's Close waits for our last words
    ENDED = "ended"  # for good: nothing can resume it


class SessionEvent(Enum):
    RESTORED = "restored"  # the phone started from its saved state
    AUTHENTICATED = "authenticated"  # station: a hello proved it holds an offer's secret
    ABANDONED = "abandoned"  # station: that transport went before the phone confirmed
    LINK_UP = "link up"  # a transport became the link
    LINK_DOWN = "link down"  # the link failed, was lost, or was superseded
    LOGOUT = "logout"  # we asked the peer to log out and wait for its answer
    PEER_ASKS_LOGOUT = "peer asks logout"  # the peer's Close, held for the application
    LOGOUT_CONFIRMED = "logout confirmed"  # the peer's Close after ours
    PEER_ENDED = "peer ended"  # the peer's Close, or its authenticated word on a resume
    PAIRING_FAILED = "pairing failed"  # refused, cut short, or given up: offers are single use
    CLOSE = "close"  # the application ends the session at once


_S = SessionState
_E = SessionEvent

SESSION_TRANSITIONS: Final[Mapping[SessionState, Mapping[SessionEvent, SessionState]]] = {
    _S.PAIRING: {
        _E.RESTORED: _S.UNLINKED,
        _E.AUTHENTICATED: _S.CONFIRMING,
        _E.LINK_UP: _S.LINKED,  # the phone: its pairing handshake completed
        _E.PAIRING_FAILED: _S.ENDED,
        _E.CLOSE: _S.ENDED,
    },
    _S.CONFIRMING: {
        _E.LINK_UP: _S.LINKED,  # the phone's first record
        _E.ABANDONED: _S.PAIRING,  # the offer is spent; a fresh one may open
        _E.CLOSE: _S.ENDED,
    },
    _S.LINKED: {
        _E.LINK_DOWN: _S.UNLINKED,
        _E.LOGOUT: _S.LOGGING_OUT,
        _E.PEER_ASKS_LOGOUT: _S.LOGOUT_REQUESTED,
        _E.PEER_ENDED: _S.ENDED,
        _E.CLOSE: _S.ENDED,
    },
    _S.UNLINKED: {
        _E.LINK_UP: _S.LINKED,
        _E.LOGOUT: _S.LOGGING_OUT,  # owed: the Close goes on the next link
        _E.PEER_ENDED: _S.ENDED,  # the phone: an authenticated refusal of its resume
        _E.CLOSE: _S.ENDED,
    },
    # A pending logout outlives links: our Close goes again on every new one.
    _S.LOGGING_OUT: {
        _E.LINK_UP: _S.LOGGING_OUT,
        _E.LINK_DOWN: _S.LOGGING_OUT,
        _E.LOGOUT: _S.LOGGING_OUT,  # asked again: still the one logout
        _E.LOGOUT_CONFIRMED: _S.ENDED,
        _E.PEER_ENDED: _S.ENDED,  # the phone: the station had ended it already
        _E.CLOSE: _S.ENDED,
    },
    # The application says its last words (the station's wipe receipt), then closes.
    _S.LOGOUT_REQUESTED: {
        _E.LINK_UP: _S.LOGOUT_REQUESTED,
        _E.LINK_DOWN: _S.LOGOUT_REQUESTED,
        _E.LOGOUT: _S.LOGGING_OUT,
        _E.CLOSE: _S.ENDED,
    },
    _S.ENDED: {},
}

# Where the application may still queue messages: before pairing completes (they go on
# the first link), while linked or not, and while saying its last words.
SENDING_STATES: Final = frozenset(
    {_S.PAIRING, _S.CONFIRMING, _S.LINKED, _S.UNLINKED, _S.LOGOUT_REQUESTED}
)

State = TypeVar("State", TransportState, SessionState)
Trigger = TypeVar("Trigger", TransportEvent, SessionEvent)


class ImpossibleTransition(UsageError):
    """The endpoint fired an event its state does not allow: a bug in the endpoint (or in
    an application calling it out of order), never something the peer can cause."""

    def __init__(self, machine: str, state: Enum, event: Enum) -> None:
        super().__init__(f"{machine}: cannot handle {event.name} in state {state.name}")
        self.machine = machine
        self.state = state
        self.event = event


def transition(
    table: Mapping[State, Mapping[Trigger, State]], state: State, event: Trigger, machine: str
) -> State:
    """The state that ``event`` leads to from ``state``; ``ImpossibleTransition`` if none.

    ``machine`` names what moved (``"session"``, ``"transport 3"``) for the message."""
    try:
        return table[state][event]
    except KeyError:
        raise ImpossibleTransition(machine, state, event) from None
