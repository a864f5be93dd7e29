"""The scripts beside the package (benchmarks/, examples/, research/) at least compile: `make
bench` once failed on a SyntaxError that no test imported."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for d in ("benchmarks", "examples", "research") for p in (ROOT / d).glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_compiles(path: Path) -> None:
    compile(path.read_text(), str(path), "exec")
