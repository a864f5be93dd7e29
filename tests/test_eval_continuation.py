"""eval continuation: the measures on constructed cases over real clips, the report in a browser."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SR, melody, tone
from typer.testing import CliRunner

from aimusic.audio import save_audio
from aimusic.cli import app
from aimusic.gen import coherence as C
from aimusic.gen.evaluate import BREAKS, CASES, evaluate_continuation, lead_silence, load_clips, spread

REAL = Path("/usr/share/hyperrogue/music")
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


def real_files() -> list[Path]:
    files = sorted(REAL.glob("*.ogg")) if REAL.is_dir() else []
    if len(files) < 5:
        pytest.skip("needs real music: apt-get install hyperrogue-music")
    return files


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> tuple[Path, dict]:
    """Truth, floor and the constructed cases on 5 real recordings (30 s in: past intros)."""
    out = tmp_path_factory.mktemp("continuation")
    m = evaluate_continuation(real_files()[:5], out, {}, SR, prompt_seconds=4.0, seconds=6.0,
                              offset=30.0, clips=5, with_constructed=True)
    return out, m


def test_constructed_cases_lose_what_they_break(checked) -> None:
    _, m = checked
    coh = m["coherence"]
    assert set(CASES) <= set(coh)
    assert all(coh["truth"][k] == pytest.approx(1.0) for k in C.MEASURES)
    assert all(coh["floor"][k] == pytest.approx(0.0) for k in C.MEASURES)
    for case, broken in BREAKS.items():
        for k in broken:  # clearly below the truth (1) on what the case breaks
            assert coh[case][k] < 0.5, (case, k, coh[case])
        assert coh[case]["overall"] < 0.75, (case, coh[case])


def test_a_copy_of_the_prompt_is_not_better_than_the_truth(checked) -> None:
    _, m = checked
    agree, coh = m["mean_agreement"], m["coherence"]
    # the loop agrees with the prompt more than the truth does (its seams may cost rhythm)...
    closer = [k for k in C.MEASURES if agree["loop"][k] > agree["truth"][k]]
    assert {"timbre", "repetition"} <= set(closer)
    # ...and that scores below the truth, not above it
    assert all(coh["loop"][k] < 1.0 for k in closer)
    assert coh["loop"]["overall"] < 0.75


def test_measures_unit_cases() -> None:
    a = melody(6.0, seed=1)
    fa, fb = C.features(a[:SR * 3], SR), C.features(a[SR * 3:], SR)
    same = C.agreement(fa, fb)
    silent = C.agreement(fa, C.features(np.zeros(SR * 3, np.float32), SR))
    assert all(v == 0.0 for v in silent.values())
    assert same["timbre"] > 0.8 and -1 <= same["harmony"] <= 1
    # a key moved by 3 semitones: an A tone against a C tone
    ha = C.agreement(C.features(tone(440.0, 2.0), SR), C.features(tone(440.0, 2.0, amp=0.2), SR))
    hc = C.agreement(C.features(tone(440.0, 2.0), SR), C.features(tone(523.25, 2.0), SR))
    assert ha["harmony"] > 0.95 > hc["harmony"] + 0.5
    # coherence: truth 1, floor 0, beyond the truth reflected, NaN where truth == floor
    t = [{k: 0.8 for k in C.MEASURES}]
    f = [{k: 0.2 for k in C.MEASURES}]
    over = [{k: 1.0 for k in C.MEASURES}]
    assert C.coherence(t, t, f)["overall"] == pytest.approx(1.0)
    assert C.coherence(over, t, f)["harmony"] == pytest.approx((0.6 - 0.2) / 0.6)
    assert math.isnan(C.coherence(t, t, t)["rhythm"])
    assert C.reflect(0.5, 0.8) == 0.5 and C.reflect(0.9, 0.8) == pytest.approx(0.7)


def test_lead_silence() -> None:
    x = np.concatenate([np.zeros(SR), tone(440.0, 1.0)])
    assert abs(lead_silence(x, SR) - SR) <= SR // 20
    assert lead_silence(np.zeros(SR, np.float32), SR) == 0


def _png_size(p: Path) -> tuple[int, int]:
    b = p.read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR"
    assert zlib.crc32(b[12:29]) == int.from_bytes(b[29:33], "big")
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def test_report_files_and_browser_rendering(checked) -> None:
    out, m = checked
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["format"] == "aimusic.eval.continuation/1" and len(on_disk["clips"]) == 5
    for c in on_disk["clips"]:
        img = out / c["files"]["truth"]["image"]
        w, h = _png_size(img)
        assert w == 10 * 50 and h == 192  # 4 + 6 s at 50 px/s
        assert (out / c["files"]["truth"]["audio"]).stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "<table" in html and "stretch1.3" in html
    if BROWSER is None:
        pytest.skip("no headless browser: apt-get install chromium-headless-shell")
    r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                        "--virtual-time-budget=10000", "--dump-dom", (out / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-images-loaded="5/5"' in r.stdout, r.stdout[:2000]
    assert 'data-audio="5"' in r.stdout


def test_clips_are_taken_spread_over_the_files(tmp_path: Path) -> None:
    """--clips N takes every len/N-th file (a split sorted by composer is sampled across
    composers); a file that cannot be used gives way to the next unused one."""
    names = [Path(f"{i:02d}.wav") for i in range(10)]
    assert spread(names, 3) == [names[i] for i in (0, 3, 6, 1, 2, 4, 5, 7, 8, 9)]
    assert spread(names, 0) == names and spread(names, 10) == names and spread(names, 12) == names
    for i in range(6):
        save_audio(tmp_path / f"{i}.wav", melody(3.0 if i != 2 else 1.0, seed=i), SR)
    files = sorted(tmp_path.glob("*.wav"))
    clips, skipped = load_clips(files, SR, 1.0, 1.5, limit=3)  # takes 0, 2, 4; 2 is too short
    assert [c.name for c in clips] == ["0", "4", "1"]
    assert [Path(s["source"]).name for s in skipped] == ["2.wav"]


def _cli(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_cli_with_tiny_models_and_errors(tmp_path: Path) -> None:
    from test_generate import make_models

    models = make_models(tmp_path / "models")
    clips = tmp_path / "clips"
    for i in range(3):
        save_audio(clips / f"c{i}.wav", melody(3.0, seed=10 + i), SR)
    save_audio(clips / "short.wav", melody(1.0), SR)
    (clips / "broken.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "rep"
    text = _cli("--quiet", "eval", "continuation", str(clips), "--models", str(models), "-o", str(out),
                "--prompt-seconds", "1", "--seconds", "1.5", "--layout", "flat", "--layout", "acoustic")
    assert "flat" in text and "acoustic" in text and "report:" in text
    m = json.loads((out / "metrics.json").read_text())
    assert {"truth", "floor", "codec", "flat", "acoustic"} <= set(m["coherence"])
    assert {s["source"].rsplit("/", 1)[-1] for s in m["skipped"]} == {"short.wav", "broken.wav"}
    assert (out / "00-flat.wav").exists() and (out / "02-acoustic.png").exists()
    # the same seed gives the same numbers
    _cli("--quiet", "eval", "continuation", str(clips), "--models", str(models),
         "-o", str(tmp_path / "again"), "--prompt-seconds", "1", "--seconds", "1.5", "--layout", "flat")
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["coherence"]["flat"] == m["coherence"]["flat"]
    # continued as `continue --prompt-eq` does: the same tokens, equalized
    _cli("--quiet", "eval", "continuation", str(clips), "--models", str(models), "--prompt-eq",
         "-o", str(tmp_path / "eq"), "--prompt-seconds", "1", "--seconds", "1.5", "--layout", "flat")
    eq = json.loads((tmp_path / "eq" / "metrics.json").read_text())
    assert eq["settings"]["prompt_eq"] and not m["settings"]["prompt_eq"]
    assert eq["coherence"]["flat"] != m["coherence"]["flat"]
    # no models, no --no-generate: a clear error naming the way out
    r = CliRunner().invoke(app, ["eval", "continuation", str(clips), "--models", str(tmp_path / "none"),
                                 "-o", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--no-generate" in r.output
    r = CliRunner().invoke(app, ["eval", "continuation", str(clips / "c0.wav"), "--no-generate",
                                 "--prompt-seconds", "1", "--seconds", "1"])
    assert r.exit_code != 0 and "at least 2 clips" in r.output


def test_the_note_judge_reads_truth_against_drone_and_other_pieces(tmp_path: Path) -> None:
    """With --notes on rendered piano scales: the truth keeps the prompt's key and its
    confident notes; another clip in another key agrees less; the drone's notes are
    unconfident (it holds the prompt's spectrum still)."""
    from aimusic.gen import notes as N

    if not N.available():
        pytest.skip("basic-pitch is not installed (make install)")
    from test_notes import tones

    scales = {"c": [60, 62, 64, 65, 67, 69, 71, 72], "fsharp": [66, 68, 70, 71, 73, 75, 77, 78],
              "a_flat": [56, 58, 60, 61, 63, 65, 67, 68]}
    files = []
    for name, scale in scales.items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = tones([int(p) for p in rng.permutation(scale * 8)[:40]], 0.3)
        files.append(tmp_path / f"{name}.wav")
        save_audio(files[-1], x, SR)
    r = CliRunner().invoke(app, ["eval", "continuation", *map(str, files), "-o",
                                 str(tmp_path / "out"), "--prompt-seconds", "4", "--seconds",
                                 "6", "--no-generate", "--constructed", "--notes", "--json"])
    assert r.exit_code == 0, r.output
    notes = json.loads(r.output[r.output.index("{"):])["notes"]
    assert {"truth", "other", "loop", "drone"} <= set(notes)
    assert notes["truth"]["key"] > 0.5 and notes["truth"]["key"] > notes["other"]["key"] + 0.3
    assert notes["truth"]["onsets_per_s"] == pytest.approx(1 / 0.3, rel=0.3)
    assert notes["drone"]["confidence"] < notes["truth"]["confidence"] - 0.1
    assert "Notes (basic-pitch)" in (tmp_path / "out" / "report.html").read_text()
