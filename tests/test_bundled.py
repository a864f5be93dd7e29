"""The models that ship in the package (aimusic/bundled/music, piano and voice), the CLI's
fallback to them, `aimusic demo`, and the script that makes a bundle
(examples/bundle_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_example
from test_generate import make_models
from typer.testing import CliRunner

from aimusic.artifacts import read_metadata
from aimusic.audio import load_audio, save_audio
from aimusic.cli import app
from aimusic.codec.stream import codec_hash
from aimusic.demo import EXAMPLE_PROMPT, PIANO_PROMPT
from aimusic.fileio import file_hash
from aimusic.gen import load_chain
from aimusic.lm.model import load_lm
from aimusic.runtime import bundled_models_dir, models_to_read
from aimusic.voice.tts import EXAMPLE_VOICE

runner = CliRunner()
BUNDLE = bundled_models_dir("music")
VOICE = bundled_models_dir("voice")
PIANO = bundled_models_dir("piano")
SR = 24000


def check_card_and_size(bundle: Path, most_bytes: float) -> None:
    """A bundle's model files fit its budget, its card names each by its hash, and its
    figures.json has tables with rows."""
    files = sorted(bundle.glob("*.safetensors"))
    assert sum(f.stat().st_size for f in files) <= most_bytes
    card = (bundle / "MODEL_CARD.md").read_text()
    for f in files:
        assert file_hash(f) in card, f.name
    figures = json.loads((bundle / "figures.json").read_text())
    assert figures["tables"] and all(t["rows"] for t in figures["tables"])


def test_bundled_models_load_chain_and_fit_the_size_budget() -> None:
    """The music set: the music codec (its decoder trained on alone, so it names the tokens
    of the codec the LMs were trained on), semantic and coarse LMs, plain sampling."""
    chain = load_chain(BUNDLE, "flat")  # refuses LMs made on another codec's tokens
    have = {"codec": codec_hash(chain.codec), "semantic": chain.semantic.source_hash}
    assert chain.stages == ("semantic", "coarse")
    assert chain.codec.tokens_hash != chain.codec.source_hash  # --decoder-only
    for stage, lm in chain.lms.items():
        assert lm.depends == have, stage
        assert read_metadata(lm.source_path)["extra"]["stored_as"] == "float16"
        assert next(lm.parameters()).dtype == torch.float32  # loaded back as float32
    check_card_and_size(BUNDLE, 40e6)
    s = chain.sampling()  # at the global default these LMs hold one chord
    assert s["coarse"].temperature == 1.0 and s["coarse"].top_k is None
    # the example prompt is a piece of the recorded test split, never trained on
    assert load_audio(EXAMPLE_PROMPT, SR).size >= 25 * SR


def test_bundled_piano_models_load_chain_and_fit_the_size_budget() -> None:
    """The piano set: semantic and coarse LMs (no fine LM: the codec decodes the three
    coarse levels), at most 40 MB, each LM made on the tokens of the codec and semantic
    model beside it, the sampling its figures were measured with, a test-split prompt."""
    chain = load_chain(PIANO)
    assert chain.layout == "flat" and chain.stages == ("semantic", "coarse")
    have = {"codec": codec_hash(chain.codec), "semantic": chain.semantic.source_hash}
    for stage, lm in chain.lms.items():
        assert lm.depends == have, stage
        assert read_metadata(lm.source_path)["extra"]["stored_as"] == "float16"
    check_card_and_size(PIANO, 40e6)
    s = chain.sampling()  # plain sampling: at 0.8 these LMs fade to silence
    assert s["coarse"].temperature == 1.0 and s["coarse"].top_k is None
    assert load_audio(PIANO_PROMPT, SR).size >= 25 * SR


def test_continue_with_the_piano_models_by_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_audio(tmp_path / "p.wav", load_audio(PIANO_PROMPT, SR, duration=2.0), SR)
    r = runner.invoke(app, ["continue", "p.wav", "--seconds", "0.4", "-o", "out.wav", "--seed", "1",
                            "--models", "piano"])
    assert r.exit_code == 0, r.output
    y = load_audio(tmp_path / "out.wav")
    assert abs(y.size - 2.4 * SR) <= 320 and np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_bundled_voice_models_load_chain_and_fit_the_size_budget() -> None:
    chain = load_chain(VOICE, "flat")
    have = {"codec": codec_hash(chain.codec), "semantic": chain.semantic.source_hash}
    reading = load_lm(VOICE / "lm-reading.safetensors", "reading")
    for stage, lm in {**chain.lms, "reading": reading}.items():
        # the semantic and reading LMs read semantic tokens alone; the others, both tokens
        if stage in ("semantic", "reading"):
            assert lm.depends["semantic"] == have["semantic"], stage
        else:
            assert lm.depends == have, stage
        assert read_metadata(lm.source_path)["extra"]["stored_as"] == "float16"
    check_card_and_size(VOICE, 40e6)
    assert load_audio(EXAMPLE_VOICE, SR).size >= 3 * SR  # a test voice: never trained on


def test_speak_without_models_uses_the_bundled_voice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIMUSIC_MODELS", raising=False)
    assert models_to_read(None, "voice") == VOICE
    r = runner.invoke(app, ["speak", "Hello there.", "-o", "hi.wav", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "bundled example voice" in r.output
    y = load_audio(tmp_path / "hi.wav")
    assert 0.2 * SR < y.size < 6 * SR and np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_without_models_the_cli_uses_the_bundled_ones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIMUSIC_MODELS", raising=False)
    assert models_to_read(None) == BUNDLE
    save_audio(tmp_path / "p.wav", load_audio(EXAMPLE_PROMPT, SR, duration=2.0), SR)
    r = runner.invoke(app, ["continue", "p.wav", "--seconds", "0.4", "-o", "out.wav", "--seed", "1"])
    assert r.exit_code == 0, r.output
    y = load_audio(tmp_path / "out.wav")
    assert abs(y.size - 2.4 * SR) <= 320 and np.isfinite(y).all() and np.abs(y).max() > 0.01
    # a ./models folder, even an empty one, is the user's: it is used, not the bundle
    (tmp_path / "models").mkdir()
    assert models_to_read(None) == Path("models")
    r = runner.invoke(app, ["continue", "p.wav", "--seconds", "0.4", "-o", "out2.wav"])
    assert r.exit_code != 0 and "codec.safetensors" in r.output


def test_demo_writes_audio_figures_and_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "-o", str(out), "--seconds", "0.5", "--prompt-seconds", "2",
                            "--models", str(BUNDLE)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["files"]) == {"continued", "truth", "truth-codec"}
    p = m["piano"]  # and a piano piece of the test split with the piano models
    assert set(p["files"]) == {"piano-continued", "piano-truth", "piano-truth-codec"}
    assert p["models"]["lm-coarse"]["hash"] == file_hash(PIANO / "lm-coarse.safetensors")
    for f in [*m["files"].values(), *p["files"].values()]:
        assert load_audio(out / f["audio"]).size == int(2.5 * SR)
        assert (out / f["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v = m["voice"]  # and a sentence spoken in the example voice with the voice models
    assert v["text"] and set(v["files"]) == {"voice", "speech"}
    assert v["models"]["lm-reading"]["hash"] == file_hash(VOICE / "lm-reading.safetensors")
    speech = load_audio(out / v["files"]["speech"]["audio"])
    assert speech.size > SR and np.abs(speech).max() > 0.01
    html = (out / "report.html").read_text()
    assert html.count("<audio") == 8 and html.count("<img") == 8 and "Timings" in html
    assert "Voice models" in html and "Solo piano" in html
    assert m["figures"] and m["models"]["codec"]["hash"] == file_hash(BUNDLE / "codec.safetensors")
    short = tmp_path / "short.wav"
    save_audio(short, np.zeros(SR, np.float32), SR)
    r = runner.invoke(app, ["demo", "-o", str(out), "--prompt", str(short), "--models", str(BUNDLE)])
    assert r.exit_code != 0 and "short.wav" in r.output and "shorter than" in r.output


def test_demo_without_espeak_still_continues_and_says_why(tmp_path: Path,
                                                          monkeypatch) -> None:
    """A fresh machine without espeak-ng: the music half of the demo runs, the voice half is
    skipped with a note in the output and the report, and the exit code is 0."""
    monkeypatch.setattr("aimusic.text.phonemes.ESPEAK", "espeak-ng-not-installed")
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "-o", str(out), "--seconds", "0.5", "--prompt-seconds", "2",
                            "--models", str(BUNDLE)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["voice"] is None and "espeak-ng" in m["voice_note"]
    assert "espeak-ng" in r.output and (out / "continued.wav").exists()
    assert "espeak-ng not found" in (out / "report.html").read_text()


def test_make_demo_installs_what_the_demo_uses() -> None:
    """`make demo` is the README's first command: the system package the demo calls
    (espeak-ng, for the spoken sentence) is installed by the target itself, not only by
    `make test`."""
    import shutil
    import subprocess

    from aimusic.text.phonemes import ESPEAK

    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parents[1]
    plan = subprocess.run(["make", "-n", "-C", str(root), "demo"], capture_output=True,
                          text=True, check=True).stdout
    installs = [line for line in plan.splitlines() if "apt-get install" in line]
    assert any(f" {ESPEAK};" in line or f" {ESPEAK} " in line for line in installs), plan


def test_bundle_script_halves_the_lms_and_keeps_the_chain(tmp_path: Path) -> None:
    bundle = load_example("bundle_models").bundle
    src = make_models(tmp_path / "src", stages=("semantic", "coarse", "fine"))
    out = tmp_path / "out"
    bundle(src, out, ["semantic", "coarse", "fine"])
    for name in ("codec.safetensors", "semantic.safetensors"):  # the tokenizers: bit for bit
        assert file_hash(out / name) == file_hash(src / name)
    load_chain(out, "flat")
    ids = torch.randint(0, 12, (1, 20))  # ids every stage reads (specials, semantic)
    for stage in ("semantic", "coarse", "fine"):
        a, b = load_lm(src / f"lm-{stage}.safetensors"), load_lm(out / f"lm-{stage}.safetensors")
        assert (out / f"lm-{stage}.safetensors").stat().st_size < 0.6 * (
            src / f"lm-{stage}.safetensors").stat().st_size
        with torch.no_grad():
            torch.testing.assert_close(a(ids), b(ids), atol=2e-2, rtol=2e-2)
    # a set bundled again without its fine LM leaves no stale file to be loaded beside it
    bundle(src, out, ["semantic", "coarse"])
    assert not (out / "lm-fine.safetensors").exists()
    assert load_chain(out, "flat").stages == ("semantic", "coarse")


def test_half_codec_is_smaller_and_decodes_alike(tmp_path: Path) -> None:
    from aimusic.codec.model import load_codec

    half_codec = load_example("bundle_models").half_codec
    src = make_models(tmp_path / "src", stages=())
    half_codec(src / "codec.safetensors", tmp_path / "half.safetensors")
    a, b = load_codec(src / "codec.safetensors"), load_codec(tmp_path / "half.safetensors")
    assert read_metadata(tmp_path / "half.safetensors")["extra"]["stored_as"] == "float16"
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (src / "codec.safetensors").stat().st_size
    codes = a.encode(torch.randn(1, 1, 4800) * 0.1)
    torch.testing.assert_close(b.decode(codes), a.decode(codes), atol=2e-3, rtol=0)


def test_models_names_a_bundled_set_where_no_folder_has_that_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert models_to_read(Path("voice")) == VOICE  # no ./voice here: the bundled set
    assert models_to_read(Path("music")) == BUNDLE
    (tmp_path / "voice").mkdir()  # a folder of that name with no models in it (piano/ of
    assert models_to_read(Path("voice")) == VOICE  # `make piano-pipeline`) does not hide it
    (tmp_path / "voice" / "codec.safetensors").write_bytes(b"")
    assert models_to_read(Path("voice")) == Path("voice")  # a models folder of that name wins
    assert models_to_read(Path("nothing")) == Path("nothing")  # the usual errors follow
