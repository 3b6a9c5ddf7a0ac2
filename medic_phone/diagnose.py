"""Naming the likely cause when the phone cannot reach the station, in one line.

Pure: it reads the dial plan's candidates (how each last failed, where each came
from) and what mDNS heard. A cause is named only once every known address has failed
at least once, so a slow first answer is not mistaken for a fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from medic_phone.dialplan import Candidate, DialPlan, Failure

ISOLATION = "the WiFi may isolate devices from each other, or a firewall blocks the port"
MULTICAST = "multicast may be blocked: scan the QR code or pass the URI"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    cause: str  # isolation | unreachable | refused | busy | multicast | refusal
    message: str


def _addresses(candidates: list[Candidate]) -> str:
    shown = [c.address for c in candidates[:4]]
    more = len(candidates) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def no_mdns_answer(listened: float) -> Diagnosis:
    return Diagnosis(
        "multicast",
        f"no station answered on mDNS within {listened:.0f} s: {MULTICAST}",
    )


def diagnose(plan: DialPlan) -> Diagnosis | None:
    """The likely cause, once every address has failed at least once (else None)."""
    candidates = [c for c in plan.candidates if not c.retired or c.last_failure]
    if not candidates or plan.linked:
        return None
    if any(c.last_failure is None for c in candidates):
        return None  # an address still has its first answer to give
    refused = [c for c in candidates if c.last_failure is Failure.REFUSED]
    if refused:
        ports = sorted({c.port for c in refused})
        return Diagnosis(
            "refused",
            f"connection refused at {_addresses(refused)}: no station listens there"
            f" (is `station start` running on that host, on port {ports[0]}?)",
        )
    silent = [c for c in candidates if c.last_failure is Failure.UNREACHABLE]
    if len(silent) == len(candidates):
        if any(c.source == "mdns" for c in silent):
            return Diagnosis(
                "isolation",
                f"the station answers on mDNS but not on its port ({_addresses(silent)}):"
                f" {ISOLATION}",
            )
        return Diagnosis(
            "unreachable",
            f"no answer from {_addresses(silent)}: is the phone on the kiosk's network?"
            f" ({ISOLATION})",
        )
    busy = [c for c in candidates if c.last_failure in (Failure.RESET, Failure.TIMEOUT)]
    if busy and len(busy) + len(silent) == len(candidates):
        return Diagnosis(
            "busy",
            f"the station at {_addresses(busy)} takes the connection but does not answer:"
            " it may be busy; retrying",
        )
    refusals = [c for c in candidates if c.last_failure is Failure.REFUSAL]
    if refusals:
        return Diagnosis("refusal", f"refused: {refusals[0].last_error}")
    return None
