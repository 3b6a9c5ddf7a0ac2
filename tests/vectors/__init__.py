"""The wire test vectors in ``docs/vectors/``: made by the real code, from fixed values.

``python -m tests.vectors`` writes them; ``python -m tests.vectors --check`` (and
``tests/tunnel/test_wire_vectors.py``) requires the committed files to be byte for byte
what the code makes now, so the vectors, the document and the code cannot drift apart.
See docs/PROTOCOL.md, "Test vectors", for how an implementer uses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILES = (
    "session.json",
    "pair-code.json",
    "wrong-code.json",
    "refusals.json",
    "records.json",
    "uri.json",
)


def generate() -> dict[str, dict[str, Any]]:
    """Every vector file's content, by file name."""
    from tests.vectors.codes import code_pairing, wrong_code
    from tests.vectors.records import rekey_boundary
    from tests.vectors.session import uri_session
    from tests.vectors.uri import uri_cases

    session = uri_session()
    out = {
        "session.json": session.files["session.json"],
        "pair-code.json": code_pairing(),
        "wrong-code.json": wrong_code(),
        "refusals.json": {
            "description": "Refusals from the session in session.json: clear ones (advisory,"
            " anyone can send them), a bound RESUME_GAP and the ended session's"
            " SESSION_ENDED (authenticated under the phone's resumption secret).",
            **session.refusals,
        },
        "records.json": rekey_boundary(),
        "uri.json": uri_cases(),
    }
    assert tuple(out) == FILES
    return out


def render(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def default_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "vectors"
