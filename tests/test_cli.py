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


def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path) -> None:
    """Every command that writes checks its output first and fails in one line naming it
    (here: a folder path that runs through a file), before loading models or training; the
    inputs need not even exist, since nothing else is read first."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    bad = blocker / "sub"
    missing = str(tmp_path / "missing")
    cases = [
        ["continue", missing, "-s", "1", "-o", str(bad / "out.wav")],
        ["train-codec", missing, "-o", str(bad / "codec.safetensors")],
        ["train-semantic", missing, "-o", str(bad / "semantic.safetensors")],
        ["train-lm", missing, "-o", str(bad)],
        ["train-tts", missing, "-o", str(bad / "lm-reading.safetensors")],
        ["tokenize", missing, "-o", str(bad)],
        ["encode", missing, "-o", str(bad / "x.codes.safetensors")],
        ["decode", missing, "-o", str(bad / "x.wav")],
        ["generate", "-s", "1", "-o", str(bad)],
        ["speak", "hello", "-o", str(bad / "x.wav")],
        ["demo", "-o", str(bad)],
        ["eval", "continuation", missing, "-o", str(bad)],
        ["eval", "codec", missing, "-o", str(bad / "x.json")],
    ]
    for args in cases:
        r = runner.invoke(app, args)
        text = " ".join(r.output.split())
        assert r.exit_code == 1 and "Traceback" not in text, (args, r.output)
        assert f"{bad}" in text and "blocker is a file, not a folder" in text, (args, text)
