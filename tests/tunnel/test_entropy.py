"""tunnel.entropy: the OS's randomness unless a fixed source is installed, and then only
inside its block and its own context."""

from __future__ import annotations

import threading

import pytest

from tunnel import entropy
from tunnel.errors import UsageError
from tunnel.noise import KeyPair


def _fixed(purpose: str, size: int) -> bytes:
    return bytes([len(purpose)]) * size


def test_draws_are_the_os_randomness_by_default() -> None:
    draws = {entropy.random_bytes(32, entropy.X25519) for _ in range(50)}
    assert len(draws) == 50 and all(len(d) == 32 for d in draws)


def test_a_fixed_source_holds_only_inside_its_block_and_its_thread() -> None:
    seen_elsewhere: list[bytes] = []
    with entropy.fixed(_fixed):
        assert entropy.random_bytes(8, entropy.OFFER_ID) == bytes([8]) * 8
        assert KeyPair.generate().private == bytes([6]) * 32  # "x25519"
        other = threading.Thread(
            target=lambda: seen_elsewhere.append(entropy.random_bytes(16, entropy.SESSION_ID))
        )
        other.start()
        other.join()
    assert seen_elsewhere[0] != bytes([10]) * 16
    assert entropy.random_bytes(8, entropy.OFFER_ID) != bytes([8]) * 8


def test_a_source_of_the_wrong_size_is_a_usage_error() -> None:
    with entropy.fixed(lambda purpose, size: b"short"), pytest.raises(UsageError):
        entropy.random_bytes(32, entropy.X25519)
