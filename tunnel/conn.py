"""One transport as an endpoint sees it: its state, its handshake driver, its records.

A transport is named by an integer the caller picks (one WebSocket, in production). The
endpoint keeps one ``Conn`` per transport it was told of, until the caller says it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tunnel.drivers import HandshakeDriver
from tunnel.events import Event
from tunnel.records import RecordReceiver, RecordSender
from tunnel.states import TRANSPORT_TRANSITIONS, TransportEvent, TransportState, transition
from tunnel.station_handshake import PhonePaired

Driver = TypeVar("Driver", bound=HandshakeDriver[object])


@dataclass(slots=True)
class Conn(Generic[Driver]):
    id: int
    opened_at: float
    state: TransportState = TransportState.HANDSHAKE
    # The handshake in progress: the phone's from its hello on; the station's only for a
    # code pairing between its reply and the phone's guess.
    driver: Driver | None = None
    sender: RecordSender | None = None
    receiver: RecordReceiver | None = None
    last_received: float = 0.0
    last_sent: float = 0.0
    ping_token: int = 0
    # Station: what this transport's resume or pairing commits once the phone confirms it.
    candidate_secret: bytes = b""
    peer_cursor: int = 0
    resumed: bool = False
    paired: PhonePaired | None = None

    @property
    def live(self) -> bool:
        return self.state is not TransportState.CLOSED

    def handle(self, event: TransportEvent) -> None:
        """Apply ``event`` (``ImpossibleTransition`` if this transport's state forbids it)."""
        self.state = transition(TRANSPORT_TRANSITIONS, self.state, event, f"transport {self.id}")


@dataclass(slots=True)
class Outbox:
    """What the endpoint produced and the caller has not taken yet."""

    data: list[tuple[int, bytes]] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
