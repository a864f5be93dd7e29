"""examples/steps.sh, the example pipelines' resumable steps: skip what is done, stop at UNTIL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

STEPS = Path(__file__).resolve().parents[1] / "examples" / "steps.sh"
SCRIPT = f"""set -euo pipefail
source {STEPS}
mkdir -p "$OUT/.done"
step one touch "$OUT/one"
step two touch "$OUT/two"
step three touch "$OUT/three"
"""


def _run(out: Path, until: str | None = None) -> str:
    env = {"OUT": str(out), "PATH": "/usr/bin:/bin"}
    if until:
        env["UNTIL"] = until
    r = subprocess.run(["bash", "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return r.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_steps_stop_at_until_and_resume_past_it(tmp_path: Path) -> None:
    out = _run(tmp_path, until="two")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["one", "two"]
    assert "stopped after two" in out
    (tmp_path / "one").unlink()  # a step marked done is not run again
    out = _run(tmp_path)
    assert "== one: built before" in out and "== two: built before" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["three", "two"]
    assert sorted(p.name for p in (tmp_path / ".done").iterdir()) == ["one", "three", "two"]
    assert "stopped after one" in _run(tmp_path, until="one")  # done before: stops all the same
