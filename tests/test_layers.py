"""The packages' layering, checked on the source: who may import whom.

`tunnel`, `wire` and `lan` import nothing of ours; `station` and `medic_phone` never import each
other; no product package imports the test kit (`tunnel.testing`) or the tests.
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

OURS = {"tunnel", "wire", "station", "medic_phone", "wipe", "drill", "bench", "tests", "lan"}
ALLOWED = {
    "tunnel": {"tunnel", "drill"},  # drill: the one fault model, for the test kit only
    "wire": {"wire"},
    "wipe": {"wipe"},
    "lan": {"lan"},
    "station": {"station", "tunnel", "wire", "wipe", "drill", "lan"},  # drill: `station simulate`
    "medic_phone": {"medic_phone", "tunnel", "wire", "wipe", "lan"},
    "drill": {"drill", "tunnel", "wire", "station", "medic_phone", "wipe"},
}


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.append((str(path.relative_to(REPO)), name))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers(package: str) -> None:
    wrong = [
        (where, name)
        for where, name in _imports(package)
        if name.split(".")[0] in OURS and name.split(".")[0] not in ALLOWED[package]
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("package", ["station", "medic_phone", "wire", "wipe", "lan", "drill"])
def test_the_product_never_imports_the_test_kit(package: str) -> None:
    wrong = [(w, n) for w, n in _imports(package) if n.startswith(("tunnel.testing", "tests"))]
    assert not wrong, wrong


def test_the_test_kit_uses_drill_only_inside_tunnel_testing() -> None:
    wrong = [
        (w, n)
        for w, n in _imports("tunnel")
        if n.startswith("drill") and not w.startswith("tunnel/testing/")
    ]
    assert not wrong, wrong
