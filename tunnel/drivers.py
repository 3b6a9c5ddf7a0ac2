"""What a transport holds while its handshake runs: a *driver*, typed.

A driver reads the peer's next flight and says what to answer and, once the peer's part is
over, the outcome. The phone's three (``PhonePairByUri``, ``PhonePairByCode``,
``PhoneResume`` in ``tunnel.handshake``) and the station's code pairing
(``StationCodePairing`` in ``tunnel.station_handshake``) all have this shape, so the
shared endpoint can keep one on each transport (``Conn.driver``) typed by the side that
made it: the phone's endpoint knows it holds phone drivers, the station's that it holds
code pairings, and neither has to check at run time what it was given.

The station's URI pairing and resume take one message and answer it at once, so they
never sit on a transport and need no driver here.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from tunnel.handshake import PairingResult, ResumeResult

Outcome_co = TypeVar("Outcome_co", covariant=True)


class HandshakeDriver(Protocol[Outcome_co]):
    """One transport's handshake in progress, on either side."""

    def receive(self, data: bytes, /) -> tuple[bytes | None, Outcome_co | None]:
        """Read the peer's next flight: our next flight (if the handshake goes on) and the
        outcome (once the peer's part is over). A ``PeerError`` if the flight is wrong;
        the phone's drivers raise ``Refused`` for the station's refusal."""
        ...


class PhoneHandshake(HandshakeDriver[PairingResult | ResumeResult], Protocol):
    """The phone speaks first: its hello opens every transport."""

    def first_message(self) -> bytes: ...
