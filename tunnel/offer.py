"""The pairing offer and its ``fieldstation://`` URI (what the QR code holds).

    fieldstation://pair?v=2&n=<name>&a=<host:port>[&a=...]&id=<offer id>
                       &k=<offer public key>&s=<one-time secret>&x=<expiry, unix s>

Binary fields are unpadded base64url. Unknown parameters are ignored (so later
versions can add some); an unknown version is refused by name. Every malformed URI
gets an ``OfferFormatError`` that says what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from tunnel.entropy import OFFER_ID, OFFER_SECRET, random_bytes
from tunnel.errors import OfferFormatError
from tunnel.flights import WIRE_VERSION
from tunnel.noise import KeyPair

PROTOCOL_VERSION = WIRE_VERSION  # the URI's v= says which wire version to speak
OFFER_ID_LEN = 8
OFFER_SECRET_LEN = 16
KEY_LEN = 32
MAX_URI_LEN = 1024
MAX_NAME_LEN = 64
MAX_ADDRESSES = 8
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PSK_PERSON = b"fs-offer-psk"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, field: str, length: int) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise OfferFormatError(f"{field}: not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise OfferFormatError(f"{field}: not base64url") from None
    if len(data) != length:
        raise OfferFormatError(f"{field}: {len(data)} bytes, expected {length}")
    return data


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_address(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise OfferFormatError(f"address {text!r}: want [v6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OfferFormatError(f"address {text!r}: bad IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise OfferFormatError(f"address {text!r}: want host:port")
        if not _HOSTNAME.match(host):
            raise OfferFormatError(f"address {text!r}: bad host")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise OfferFormatError(f"address {text!r}: port must be 1-65535")
    return host, int(port)


def _check_name(name: str) -> str:
    if not name:
        raise OfferFormatError("station name is empty")
    if len(name) > MAX_NAME_LEN:
        raise OfferFormatError(f"station name longer than {MAX_NAME_LEN} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise OfferFormatError("station name has control characters")
    return name


@dataclass(frozen=True, slots=True)
class PairingOffer:
    station: str
    addresses: tuple[tuple[str, int], ...]
    offer_id: bytes
    public_key: bytes
    secret: bytes
    expires_at: int
    version: int = PROTOCOL_VERSION

    def to_uri(self) -> str:
        parts = [f"v={self.version}", f"n={quote(self.station, safe='')}"]
        parts += [f"a={quote(_format_address(h, p), safe='[]:')}" for h, p in self.addresses]
        parts += [
            f"id={_b64(self.offer_id)}",
            f"k={_b64(self.public_key)}",
            f"s={_b64(self.secret)}",
            f"x={self.expires_at}",
        ]
        return "fieldstation://pair?" + "&".join(parts)

    @classmethod
    def from_uri(cls, uri: str) -> PairingOffer:
        if len(uri) > MAX_URI_LEN:
            raise OfferFormatError(f"URI longer than {MAX_URI_LEN} characters")
        parts = urlsplit(uri.strip())
        if parts.scheme.lower() != "fieldstation":
            raise OfferFormatError("not a fieldstation:// URI")
        if parts.netloc != "pair":
            raise OfferFormatError("not a pairing URI (want fieldstation://pair?...)")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise OfferFormatError("malformed query") from None

        def one(key: str, field: str) -> str:
            values = query.get(key)
            if not values:
                raise OfferFormatError(f"missing {field} ({key}=)")
            if len(values) > 1:
                raise OfferFormatError(f"{field} ({key}=) given twice")
            return values[0]

        version_text = one("v", "version")
        if not version_text.isdigit():
            raise OfferFormatError("version is not a number")
        if int(version_text) != PROTOCOL_VERSION:
            raise OfferFormatError(
                f"unsupported version {version_text} (this phone speaks {PROTOCOL_VERSION})"
            )
        addresses = tuple(_parse_address(a) for a in query.get("a", []))
        if not addresses:
            raise OfferFormatError("no station address (a=)")
        if len(addresses) > MAX_ADDRESSES:
            raise OfferFormatError(f"more than {MAX_ADDRESSES} addresses")
        expiry = one("x", "expiry")
        if not expiry.isdigit() or len(expiry) > 12:
            raise OfferFormatError("expiry is not a unix time")
        return cls(
            station=_check_name(one("n", "station name")),
            addresses=addresses,
            offer_id=_unb64(one("id", "offer id"), "offer id", OFFER_ID_LEN),
            public_key=_unb64(one("k", "offer key"), "offer key", KEY_LEN),
            secret=_unb64(one("s", "secret"), "secret", OFFER_SECRET_LEN),
            expires_at=int(expiry),
        )

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def psk(self) -> bytes:
        """The Noise psk: the one-time secret, bound to this offer's id and key."""
        return hashlib.blake2b(
            self.offer_id + self.public_key, digest_size=32, key=self.secret, person=_PSK_PERSON
        ).digest()


def new_offer(
    station: str,
    addresses: list[tuple[str, int]] | tuple[tuple[str, int], ...],
    *,
    now: float,
    ttl: float,
    keypair: KeyPair | None = None,
) -> tuple[PairingOffer, KeyPair]:
    keypair = keypair or KeyPair.generate()
    offer = PairingOffer(
        station=_check_name(station),
        addresses=tuple(addresses),
        offer_id=random_bytes(OFFER_ID_LEN, OFFER_ID),
        public_key=keypair.public,
        secret=random_bytes(OFFER_SECRET_LEN, OFFER_SECRET),
        expires_at=int(now + ttl),
    )
    return offer, keypair
