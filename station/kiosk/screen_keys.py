"""Who may open the pairing screen: one-use launch links, exchanged for page keys.

The pairing screen's live state names every session page with its token, so whoever
opens the screen's live channel can open every session. No key that does so is ever
in a process's arguments, its environment, a log or an event, where another local
user could read it. Instead:

* the owner gets a **launch link** over the 0600 control socket (``station open``,
  ``station status --link``), and ``--kiosk`` writes one into a 0700 file for its
  browser. The link carries a launch token in its fragment (never sent in a request
  line, so never in a server log); it works once, and only for ``LAUNCH_TTL`` seconds;
* the page spends the token on the live channel and gets a **page key** back, which it
  keeps in memory only, to reconnect and to load the QR code. Each launch gets its own
  key under a label (``kiosk-3``, ``link-7``), so the station knows which of its
  screens are open and can revoke one page without touching the others.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

from station.kiosk.http import new_token

LAUNCH_TTL = 30.0  # seconds a launch link works (once)
MAX_LAUNCHES = 16  # links not yet used; the oldest goes first
MAX_KEYS = 16  # page keys alive at once; the oldest goes first


@dataclass(frozen=True, slots=True)
class Launch:
    token: str
    label: str
    expires_at: float  # monotonic


def _find(secrets_: list[str], given: str) -> str | None:
    """The entry equal to ``given``, comparing each in constant time."""
    found = None
    for secret in secrets_:
        if hmac.compare_digest(secret.encode(), given.encode()):
            found = secret
    return found


class ScreenKeys:
    def __init__(self, *, ttl: float = LAUNCH_TTL) -> None:
        self.ttl = ttl
        self._launches: OrderedDict[str, Launch] = OrderedDict()
        self._keys: OrderedDict[str, str] = OrderedDict()  # page key -> label
        self._serial = 0

    def launch(self, kind: str, *, now: float | None = None) -> Launch:
        """A new one-use launch token, labelled ``kind-N``."""
        at = time.monotonic() if now is None else now
        self._prune(at)
        self._serial += 1
        launch = Launch(new_token(), f"{kind}-{self._serial}", at + self.ttl)
        self._launches[launch.token] = launch
        while len(self._launches) > MAX_LAUNCHES:
            self._launches.popitem(last=False)
        return launch

    def usable(self, token: str, *, now: float | None = None) -> bool:
        """Whether ``token`` would be accepted now (without spending it)."""
        self._prune(time.monotonic() if now is None else now)
        return _find(list(self._launches), token) is not None

    def spend(self, token: str, *, now: float | None = None) -> tuple[str, str, list[str]] | None:
        """Spend a launch token: (its new page key, its label, the labels evicted to
        make room), or None if it is unknown, used or expired."""
        self._prune(time.monotonic() if now is None else now)
        found = _find(list(self._launches), token)
        if found is None:
            return None
        launch = self._launches.pop(found)
        key = new_token()
        self._keys[key] = launch.label
        evicted = []
        while len(self._keys) > MAX_KEYS:
            evicted.append(self._keys.popitem(last=False)[1])
        return key, launch.label, evicted

    def label_of(self, key: str) -> str | None:
        """The label of a live page key, or None."""
        found = _find(list(self._keys), key)
        return None if found is None else self._keys[found]

    def revoke(self, label: str) -> None:
        """Forget the page key (and any unused launch) of one label."""
        for key in [k for k, v in self._keys.items() if v == label]:
            del self._keys[key]
        for token in [t for t, v in self._launches.items() if v.label == label]:
            del self._launches[token]

    def _prune(self, now: float) -> None:
        for token in [t for t, v in self._launches.items() if v.expires_at <= now]:
            del self._launches[token]
