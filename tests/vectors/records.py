"""The record layer at its rekey boundary, sealed by the real ``RecordSender``."""

from __future__ import annotations

from tests.vectors.common import check
from tests.vectors.fixed import JSON, hx, label_bytes, nonce12
from tests.vectors.wire import record_json
from tunnel.frames import Ping, encode_frame
from tunnel.noise import MAX_NONCE, CipherState
from tunnel.records import DEFAULT_REKEY_INTERVAL, RecordReceiver, RecordSender

SHOWN = (0, 1, DEFAULT_REKEY_INTERVAL - 1, DEFAULT_REKEY_INTERVAL, DEFAULT_REKEY_INTERVAL + 1)


def rekey_boundary() -> JSON:
    key = label_bytes("records: one direction's transport key", 32)
    sender = RecordSender(CipherState(key))
    receiver = RecordReceiver(CipherState(key))
    shown: list[JSON] = []
    for counter in range(DEFAULT_REKEY_INTERVAL + 2):
        record = sender.seal(encode_frame(Ping(0, counter + 1)))
        check(receiver.open(record) == encode_frame(Ping(0, counter + 1)), "a record did not open")
        if counter in SHOWN:
            shown.append({**record_json(key, record), "bytes": hx(record)})
    rekeyed = CipherState(key)
    rekeyed.rekey()
    twice = CipherState(rekeyed.key)
    twice.rekey()
    return {
        "description": "One direction's records around the rekey boundary. Records 0 to"
        " 65535 are sealed under the Split() key k; from record 65536 on, under REKEY(k)"
        " (and from 131072 under REKEY(REKEY(k)), ...). The nonce is the record's counter"
        " and is never reset. Each record carries a Ping with token = counter + 1.",
        "key": hx(key),
        "rekey_interval": DEFAULT_REKEY_INTERVAL,
        "rekey": {
            "nonce": hx(nonce12(MAX_NONCE)),
            "plaintext": hx(bytes(32)),
            "ad": "",
            "rekeyed_key": hx(rekeyed.key or b""),
            "rekeyed_twice": hx(twice.key or b""),
        },
        "records": shown,
    }
