"""The phone's keystore: 0600 from birth, atomic, sealed by a passphrase, specific errors."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.pwhash import argon2id

from medic_phone.errors import (
    IdentityExists,
    KeystoreError,
    NotInitialized,
    PassphraseRequired,
    PhoneUsageError,
    WrongPassphrase,
)
from medic_phone.keystore import (
    KEY_FILE,
    create_identity,
    is_sealed,
    load_identity,
    load_seed,
    resolve_home,
    save_seed,
)

SEED = bytes(range(32))
OTHER_SEED = bytes(range(100, 132))


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: any mode narrower than 0666/0777 must then come from the code itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name != KEY_FILE)


# -- where the home is ------------------------------------------------------------------


def test_resolve_home_prefers_flag_then_env_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("FIELDSTATION_PHONE_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_home(None) == tmp_path / "env"
    monkeypatch.delenv("FIELDSTATION_PHONE_HOME")
    assert resolve_home(None) == tmp_path / "user" / ".local" / "share" / "medic-phone"
    assert resolve_home("~/phone") == tmp_path / "user" / "phone"


# -- plain storage and permissions --------------------------------------------------------


@pytest.mark.usefixtures("open_umask")
def test_plain_round_trip_with_0600_file_and_0700_home(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    path = save_seed(home, SEED, device_name="ward-3")
    assert path == home / KEY_FILE
    assert _mode(path) == 0o600
    assert _mode(home) == 0o700
    stored = load_seed(home)
    assert (stored.seed, stored.device_name, stored.sealed) == (SEED, "ward-3", False)
    assert not is_sealed(home)
    assert _leftovers(home) == []


def test_file_is_created_exclusive_0600_and_never_chmodded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, **kw)

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the keystore must not chmod: the file is born 0600")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    save_seed(tmp_path, SEED, device_name="ward-3")
    created = [(p, f, m) for p, f, m in opened if f & os.O_CREAT]
    assert len(created) == 1
    _, flags, mode = created[0]
    assert flags & os.O_EXCL and mode == 0o600


def test_write_is_fsynced_file_and_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_mode)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    save_seed(tmp_path, SEED, device_name="ward-3")
    # The file's bytes first, then the directory entry that publishes them.
    assert stat.S_ISREG(synced[0]) and stat.S_ISDIR(synced[-1])


def test_identity_round_trip_keeps_the_fingerprint(tmp_path: Path) -> None:
    identity = create_identity(tmp_path, name="ward-3")
    assert load_identity(tmp_path).fingerprint == identity.fingerprint
    assert load_seed(tmp_path).seed == identity.seed


def test_seed_never_appears_in_repr(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="ward-3")
    text = repr(load_seed(tmp_path))
    assert SEED.hex() not in text and base64.b64encode(SEED).decode() not in text
    assert "ward-3" in text


# -- refusing to overwrite, atomic replacement ----------------------------------------------


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="first")
    with pytest.raises(IdentityExists, match="--force"):
        save_seed(tmp_path, OTHER_SEED, device_name="second")
    assert load_seed(tmp_path).seed == SEED
    assert _leftovers(tmp_path) == []
    save_seed(tmp_path, OTHER_SEED, device_name="second", force=True)
    assert load_seed(tmp_path).seed == OTHER_SEED
    assert _mode(tmp_path / KEY_FILE) == 0o600
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["replace", "link"])
def test_a_failed_publish_leaves_the_old_file_and_no_debris(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, step: str
) -> None:
    had_old = step == "replace"
    if had_old:
        save_seed(tmp_path, SEED, device_name="first")
    before = (tmp_path / KEY_FILE).read_bytes() if had_old else None

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, step, crash)
    with pytest.raises(KeystoreError, match="No space left"):
        save_seed(tmp_path, OTHER_SEED, device_name="second", force=had_old)
    if before is None:
        assert not (tmp_path / KEY_FILE).exists()
    else:
        assert (tmp_path / KEY_FILE).read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_an_interrupted_replace_keeps_the_old_identity_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even an exception that is not an error (KeyboardInterrupt-like) leaves no half file."""
    save_seed(tmp_path, SEED, device_name="first")

    class Killed(BaseException):
        pass

    def die(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(Killed):
        save_seed(tmp_path, OTHER_SEED, device_name="second", force=True)
    assert load_seed(tmp_path).seed == SEED
    assert _leftovers(tmp_path) == []


# -- passphrase ---------------------------------------------------------------------------


def test_passphrase_round_trip_and_sealed_file_hides_the_seed(tmp_path: Path) -> None:
    identity = create_identity(tmp_path, name="ward-3", passphrase="correct horse")
    raw = (tmp_path / KEY_FILE).read_text()
    record = json.loads(raw)
    assert "seed" not in record and record["kdf"] == "argon2id"
    assert (record["opslimit"], record["memlimit"]) == (
        argon2id.OPSLIMIT_INTERACTIVE,
        argon2id.MEMLIMIT_INTERACTIVE,
    )
    assert base64.b64encode(identity.seed).decode() not in raw
    assert identity.seed.hex() not in raw
    assert is_sealed(tmp_path)
    stored = load_seed(tmp_path, passphrase="correct horse")
    assert (stored.seed, stored.sealed) == (identity.seed, True)
    assert load_identity(tmp_path, passphrase="correct horse").fingerprint == identity.fingerprint


def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="ward-3", passphrase="correct horse")
    with pytest.raises(WrongPassphrase, match="passphrase does not open"):
        load_seed(tmp_path, passphrase="battery staple")
    with pytest.raises(PassphraseRequired, match="--passphrase"):
        load_seed(tmp_path)
    with pytest.raises(PassphraseRequired):
        load_seed(tmp_path, passphrase="")


def test_moderate_limits_are_stored_and_used(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="ward-3", passphrase="pw", strength="moderate")
    record = json.loads((tmp_path / KEY_FILE).read_text())
    assert (record["opslimit"], record["memlimit"]) == (
        argon2id.OPSLIMIT_MODERATE,
        argon2id.MEMLIMIT_MODERATE,
    )
    assert load_seed(tmp_path, passphrase="pw").seed == SEED


def test_passphrase_is_unicode_normalised(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="ward-3", passphrase="caf\u00e9")
    assert load_seed(tmp_path, passphrase="cafe\u0301").seed == SEED


def test_a_flipped_bit_in_the_sealed_seed_is_refused(tmp_path: Path) -> None:
    save_seed(tmp_path, SEED, device_name="ward-3", passphrase="pw")
    path = tmp_path / KEY_FILE
    record = json.loads(path.read_text())
    sealed = bytearray(base64.b64decode(record["sealed"]))
    sealed[-1] ^= 1
    record["sealed"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(WrongPassphrase):
        load_seed(tmp_path, passphrase="pw")


# -- missing, damaged, misuse -------------------------------------------------------------


def test_missing_identity_says_run_init(tmp_path: Path) -> None:
    for home in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(NotInitialized, match=r"run `medic-phone init` first"):
            load_seed(home)
    with pytest.raises(NotInitialized):
        is_sealed(tmp_path)


def _sealed_record() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "ward-3",
        "kdf": "argon2id",
        "salt": base64.b64encode(b"s" * 16).decode(),
        "opslimit": 2,
        "memlimit": 8192,
        "sealed": base64.b64encode(b"x" * 72).decode(),
    }


def _edit(**changes: Any) -> Callable[[], bytes]:
    def build() -> bytes:
        record = _sealed_record()
        for key, value in changes.items():
            if value is None:
                del record[key]
            else:
                record[key] = value
        return json.dumps(record).encode()

    return build


_PLAIN = {"version": 1, "name": "ward-3", "seed": base64.b64encode(SEED).decode()}

DAMAGED: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "not a JSON identity file"),
    ("binary", lambda: os.urandom(64) + b"\xff", "not a JSON identity file"),
    ("list", lambda: b"[1, 2]", "not a JSON object"),
    ("too large", lambda: b" " * 20_000, "too large"),
    ("version", lambda: json.dumps({**_PLAIN, "version": 2}).encode(), "unknown keystore version"),
    ("bool version", lambda: json.dumps({**_PLAIN, "version": True}).encode(), "version"),
    ("no name", lambda: json.dumps({"version": 1, "seed": _PLAIN["seed"]}).encode(), "no device"),
    ("neither", lambda: json.dumps({"version": 1, "name": "n"}).encode(), "exactly one"),
    ("both", _edit(seed=_PLAIN["seed"]), "exactly one"),
    ("seed not b64", lambda: json.dumps({**_PLAIN, "seed": "%%%"}).encode(), "not base64"),
    (
        "short seed",
        lambda: json.dumps({**_PLAIN, "seed": base64.b64encode(b"x" * 31).decode()}).encode(),
        "31 bytes",
    ),
    ("kdf", _edit(kdf="scrypt"), "unknown key derivation"),
    ("salt", _edit(salt=base64.b64encode(b"s" * 8).decode()), "salt is 8 bytes"),
    ("no salt", _edit(salt=None), "'salt' is missing"),
    ("huge memlimit", _edit(memlimit=1 << 40), "'memlimit' is not an integer in"),
    ("text opslimit", _edit(opslimit="2"), "'opslimit'"),
    ("sealed", _edit(sealed="not base64!"), "'sealed' is not base64"),
]


@pytest.mark.parametrize(
    ("content", "message"), [(c, m) for _, c, m in DAMAGED], ids=[n for n, _, _ in DAMAGED]
)
def test_damaged_files_get_a_specific_keystore_error(
    tmp_path: Path, content: Callable[[], bytes], message: str
) -> None:
    (tmp_path / KEY_FILE).write_bytes(content())
    with pytest.raises(KeystoreError, match=message) as caught:
        load_seed(tmp_path, passphrase="pw")
    assert not isinstance(caught.value, WrongPassphrase)
    assert str(tmp_path / KEY_FILE) in str(caught.value)


def test_unreadable_path_is_a_keystore_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).mkdir()
    with pytest.raises(KeystoreError, match="cannot read"):
        load_seed(tmp_path)


@pytest.mark.parametrize(
    ("seed", "name", "passphrase", "message"),
    [
        (SEED[:31], "ward-3", None, "32 bytes"),
        (SEED, "", None, "device name"),
        (SEED, "x" * 65, None, "device name"),
        (SEED, "bad\nname", None, "device name"),
        (SEED, "ward-3", "", "empty passphrase"),
    ],
)
def test_misuse_is_a_usage_error_and_writes_nothing(
    tmp_path: Path, seed: bytes, name: str, passphrase: str | None, message: str
) -> None:
    with pytest.raises(PhoneUsageError, match=message):
        save_seed(tmp_path, seed, device_name=name, passphrase=passphrase)
    assert list(tmp_path.iterdir()) == []


def test_unknown_strength_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PhoneUsageError, match="strength"):
        save_seed(
            tmp_path,
            SEED,
            device_name="n",
            passphrase="pw",
            strength="extreme",  # type: ignore[arg-type]
        )
