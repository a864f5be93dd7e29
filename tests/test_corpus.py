"""The reference-corpus builder (examples/make_corpus.py): real renders of short pieces."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import SR, tone

from aimusic.audio import audio_info, load_audio, rms_db, save_audio

ROOT = Path(__file__).resolve().parents[1]


def _import_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "examples/make_corpus.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_corpus"] = mod  # dataclasses and worker processes look it up by name
    spec.loader.exec_module(mod)
    return mod


mc = _import_script()


def _need_renderer() -> None:
    pytest.importorskip("music21", reason="music21 not installed: pip install music21")
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed: sudo apt-get install fluidsynth")
    try:
        mc.find_soundfont()
    except mc.CorpusError:
        pytest.skip("no General MIDI soundfont: sudo apt-get install fluid-soundfont-gm")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """Two rendered pieces and one pair, 8 s each, through the worker pool."""
    _need_renderer()
    out = tmp_path_factory.mktemp("corpus")
    m = mc.build_corpus(out, size="small", seed=0, workers=2, max_pieces=2, max_seconds=8,
                        pairs=1)
    return out, m


def test_files_are_24k_mono_nonsilent_and_match_the_manifest(built) -> None:
    out, m = built
    assert m["format"] == "aimusic.corpus/1" and m["seed"] == 0
    assert json.loads((out / "manifest.json").read_text())["entries"] == m["entries"]
    sources = [e["source"] for e in m["entries"]]
    assert sources.count("rendered") == 2 and sources.count("pair") == 2
    for e in m["entries"]:
        info = audio_info(out / e["path"])
        assert (info.sample_rate, info.channels) == (SR, 1)
        assert abs(info.duration - e["duration_s"]) < 1e-3
        assert 1.0 <= e["duration_s"] <= 8.0
        x = load_audio(out / e["path"])
        assert rms_db(x) > -40 and 0.8 < np.abs(x).max() < 0.95  # peak about -1 dBFS
        for inst in e["instruments"]:
            assert mc.GM_NAMES[inst["program"]] == inst["name"]
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.wav")}
    assert on_disk == {e["path"] for e in m["entries"]}


def test_splits_are_disjoint_by_piece(built) -> None:
    _, m = built
    splits: dict[str, set[str]] = {}
    for e in m["entries"]:
        if e["source"] == "rendered":
            splits.setdefault(e["piece"], set()).add(e["split"])
            assert e["path"].startswith(f"rendered/{e['split']}/")
    assert all(len(s) == 1 for s in splits.values())
    assert not set(m["pairs"]["pieces"]) & set(splits)  # pair pieces are held out


def test_pair_renders_align_and_differ_in_instruments(built) -> None:
    out, m = built
    (piece,) = m["pairs"]["pieces"]
    a, b = (next(e for e in m["entries"] if e["piece"] == piece and e.get("pair_set") == s)
            for s in ("a", "b"))
    assert a["duration_s"] == b["duration_s"]
    pa, pb = ({i["program"] for i in e["instruments"]} for e in (a, b))
    assert pa <= set(mc.POOL_A) and pb <= set(mc.POOL_B) and not pa & pb
    xa, xb = load_audio(out / a["path"]), load_audio(out / b["path"])
    assert xa.shape == xb.shape

    def spectrum(x: np.ndarray) -> np.ndarray:  # mean log power in 32 bands
        frames = x[: len(x) // 1024 * 1024].reshape(-1, 1024) * np.hanning(1024)
        p = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0)[:512].reshape(32, 16).sum(1)
        return 10 * np.log10(p / p.sum() + 1e-12)

    assert np.abs(spectrum(xa) - spectrum(xb)).mean() > 1.0  # dB: audibly different timbre


def test_rerun_keeps_every_file(built) -> None:
    out, m = built
    stamps = {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in m["entries"]}
    again = mc.build_corpus(out, size="small", seed=0, workers=2, max_pieces=2, max_seconds=8,
                            pairs=1)
    assert again["reused"] == len(again["entries"]) == len(m["entries"])
    assert {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in again["entries"]} == stamps


def test_choices_depend_only_on_the_seed() -> None:
    pytest.importorskip("music21", reason="music21 not installed: pip install music21")
    cands = mc.list_candidates()
    first = mc.choose_pieces(cands, 0, 30)
    assert first == mc.choose_pieces(list(reversed(cands)), 0, 30)
    assert first != mc.choose_pieces(cands, 1, 30)
    assert len({p.group for p in first}) >= 15  # round robin over composers and collections
    assert mc.assign_programs("x", 4, 0) == mc.assign_programs("x", 4, 0)
    assert set(mc.assign_programs("y", 6, 3, "a")) <= set(mc.POOL_A)
    assert set(mc.assign_programs("y", 6, 3, "b")) <= set(mc.POOL_B)
    assert not set(mc.POOL_A) & set(mc.POOL_B)


@pytest.mark.parametrize("n", [3, 4, 7, 12, 40])
def test_every_split_is_filled_from_three_items(n: int) -> None:
    names = [f"piece{i}" for i in range(n)]
    for seed in range(5):
        splits = mc.assign_splits(names, seed)
        assert set(splits.values()) == set(mc.SPLITS)
        assert splits == mc.assign_splits(list(reversed(names)), seed)


def test_split_proportions_and_stability() -> None:
    names = [f"t{i}" for i in range(4000)]
    counts = {s: 0 for s in mc.SPLITS}
    for n in names:
        counts[mc.split_of(n, 0)] += 1
    assert abs(counts["train"] / 4000 - 0.8) < 0.03 and abs(counts["test"] / 4000 - 0.1) < 0.02
    sub = mc.assign_splits(names[:100], 0)
    assert sum(sub[n] == mc.split_of(n, 0) for n in sub) == 100  # no fix-up needed


def test_programs_land_in_the_midi_file() -> None:
    pytest.importorskip("music21", reason="music21 not installed: pip install music21")
    from music21 import midi, note, stream

    score = stream.Score([stream.Part([note.Note("C4", quarterLength=2)]),
                          stream.Part([note.Note("E3", quarterLength=4)])])
    mc.set_programs(score, [12, 70])
    data = mc.score_to_midi(score, [12, 70])
    mf = midi.MidiFile()
    mf.readstr(data)
    events = [e for t in mf.tracks for e in t.events if not isinstance(e, midi.DeltaTime)]
    programs = {e.data for e in events if e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE}
    assert programs == {12, 70}
    offs = [e for e in mf.tracks[-1].events if getattr(e, "parameter1", None) == 123]
    assert len(offs) == 2  # all-notes-off for both channels at the very end
    with pytest.raises(ValueError, match="programs"):
        mc.score_to_midi(score, [12, 71])


def test_decode_track_from_file_and_pk3(tmp_path: Path) -> None:
    stereo = np.stack([tone(440, 2.0, sr=44100), tone(660, 2.0, sr=44100)], 1)
    save_audio(tmp_path / "song.ogg", stereo, 44100)
    with zipfile.ZipFile(tmp_path / "music.pk3", "w") as z:
        z.write(tmp_path / "song.ogg", "music/song.ogg")
    for track in (mc.Track("pkg", str(tmp_path / "song.ogg"), None),
                  mc.Track("pkg", str(tmp_path / "music.pk3"), "music/song.ogg")):
        r = mc.decode_track({"track": track, "out": str(tmp_path), "path": "o/x.wav",
                             "split": "train", "key": "k"})
        (e,) = r["entries"]
        info = audio_info(tmp_path / e["path"])
        assert (info.sample_rate, info.channels) == (SR, 1) and abs(info.duration - 2.0) < 0.05
    (tmp_path / "bad.ogg").write_bytes(b"not audio")
    r = mc.decode_track({"track": mc.Track("pkg", str(tmp_path / "bad.ogg"), None),
                         "out": str(tmp_path), "path": "o/y.wav", "split": "train", "key": "k"})
    assert "error" in r and not (tmp_path / "o/y.wav").exists()


def test_missing_package_is_reported() -> None:
    tracks, missing = mc.find_soundtracks(["aimusic-no-such-package"])
    assert tracks == [] and missing == ["aimusic-no-such-package"]


def test_missing_fluidsynth_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(mc.shutil, "which", lambda name: None)
    assert mc.main(["--out", str(tmp_path), "--size", "small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install fluidsynth" in err
