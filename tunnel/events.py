"""What a tunnel endpoint tells its application."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Paired:
    """The pairing handshake completed and was confirmed."""

    session_id: bytes
    station: str
    fingerprint: str | None  # the phone's, as the station sees it; None on the phone


@dataclass(frozen=True, slots=True)
class LinkUp:
    conn: int
    resumed: bool


@dataclass(frozen=True, slots=True)
class LinkDown:
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer has everything through ``through``."""

    through: int


@dataclass(frozen=True, slots=True)
class PairingFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """The phone: one transport's handshake did not complete (refused, timed out, cut).

    With several attempts at once (every address of the station) this says which one
    failed and why; the session goes on while other attempts may still succeed.
    ``refusal`` is the clear-text refusal's code, if the failure was one (advisory).
    """

    conn: int
    reason: str
    refusal: int | None = None


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Logout: the session is over for good and can never be resumed.

    ``confirmed``: our own logout (``close(confirm=True)``) was answered by the peer's
    Close, so the peer knows; ``by_peer``: the peer logged us out."""

    reason: str
    by_peer: bool
    undelivered: int
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class LogoutRequested:
    """The peer sent Close and waits for ours (only when ``Endpoint.answer_close`` is
    False: the application says its last words, then calls ``close``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    """The peer's latest word on some state (unsequenced; see ``Endpoint.notify``)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class OfferRotated:
    """The station opened a new current offer (on its timer, or after a pairing that
    authenticated never completed). ``previous_id``: the offer still in its grace."""

    offer_id: bytes
    code: str
    previous_id: bytes | None


@dataclass(frozen=True, slots=True)
class CodePaused:
    """Wrong code(s): the codes guessed are burned and code pairing pauses.

    ``code`` is the current offer's new code (it works once the pause is over)."""

    seconds: float
    failures: int  # failed guesses in the streak
    code: str


@dataclass(frozen=True, slots=True)
class ResumeGap:
    """A resume whose cursor is behind what that phone already acknowledged: seqs
    ``first``..``last`` were delivered before and are not in the phone's store now."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The phone's resumable state changed: persist ``export_state()`` before sending."""


Event = (
    Paired
    | LinkUp
    | LinkDown
    | MessageReceived
    | Acked
    | PairingFailed
    | OfferRotated
    | CodePaused
    | ResumeGap
    | AttemptFailed
    | SessionEnded
    | StateChanged
    | NoticeReceived
    | LogoutRequested
)
