import re

import pytest
import torch
from typer.testing import CliRunner

from aimusic import __version__
from aimusic.artifacts import save_artifact
from aimusic.cli import app

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    cmd = typer.main.get_command(group)
    out = []
    for name, sub in cmd.commands.items():  # type: ignore[attr-defined]
        if hasattr(sub, "commands"):
            out += [(*prefix, name, n) for n in sub.commands]
        else:
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("command", _commands(app))
def test_help_of_every_command(command) -> None:
    r = runner.invoke(app, [*command, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def test_version_and_global_options() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    for opt in ("--verbose", "--quiet", "--device", "--seed"):
        assert opt in r.output


def test_info_prints_kind_config_and_depends(tmp_path) -> None:
    p = save_artifact(tmp_path / "m.safetensors", {"w": torch.zeros(4)}, "lm", 1, {"dim": 4},
                      depends={"codec": "0123abcd"})
    r = runner.invoke(app, ["info", str(p)])
    assert r.exit_code == 0, r.output
    assert "aimusic.lm/1" in r.output and "0123abcd" in r.output and "dim" in r.output
    r = runner.invoke(app, ["info", str(p), "--json"])
    assert '"parameters": 4' in r.output


def test_errors_are_one_line_and_exit_nonzero(tmp_path) -> None:
    r = runner.invoke(app, ["info", str(tmp_path / "nope.safetensors")])
    assert r.exit_code == 1
    assert re.search(r"error: .*nope.safetensors: file not found", r.output.replace("\n", ""))
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["-v", "info", str(tmp_path / "nope.safetensors")])
    assert r.exit_code == 1 and "Traceback" in r.output


def test_the_cli_starts_without_importing_torch() -> None:
    """`aimusic --help` and `--version` answer at once: torch (about 2 s to import) comes in
    only with a command that uses it."""
    import subprocess
    import sys

    code = "import sys, aimusic.cli; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
