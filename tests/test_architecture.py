"""The shape of the code: record keys in one module, no torch under the strategies, short
functions. Layer contracts are import-linter's (``lint-imports`` in ``make test``)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fedslim import protocol

SRC = Path(__file__).resolve().parents[1] / "src" / "fedslim"
MAX_FUNCTION_LINES = 60
# the same words in other namespaces: run-config keys, the TOML table, the results' JSON
OTHER_NAMESPACES = {
    "config/__init__.py": {"config"},
    "config/sections.py": {"num-examples", "lora-r"},
    "server/checkpoint.py": {"config"},
    "server/results.py": {"config"},
    "experiments/sweep.py": {"config"},
    "experiments/paired.py": {"config"},  # summary.json's, for the seed a run ran
    "split/service.py": {"base"},  # the tail service's Info answer
    "deploy/links.py": {"up"},  # `ip link set DEV up`
    # fedslim.flower's own records (a Flower app's messages, not fedslim's) and the
    # FedAvg family's metric keys
    "flower/wire.py": {"base", "held", "residual", "resync", "num-examples", "train-loss"},
}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_record_keys_live_only_in_the_protocol(path):
    if path.name == "protocol.py" and path.parent == SRC:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = OTHER_NAMESPACES.get(str(path.relative_to(SRC)), set())
    keys = protocol.RECORD_KEYS - allowed
    found = [(line, s) for line, s in _strings(tree) if s in keys]
    assert not found, f"record keys outside protocol.py: {found}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_functions_stay_short(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_strategies_never_import_torch():
    code = (
        "import sys, fedslim.strategies.compressed, fedslim.strategies.catalog, fedslim.protocol,"
        " fedslim.ledger, fedslim.vectors; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
