"""The solo piano corpus builder (examples/make_piano_corpus.py) at a small size: real
renders of three short pieces, split by piece, a bad score skipped and reported, a rerun
that keeps everything."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import load_example

from aimusic.audio import audio_info, load_audio

music21 = pytest.importorskip("music21", reason="music21 not installed: pip install music21")
if shutil.which("fluidsynth") is None:
    pytest.skip("fluidsynth not installed: sudo apt-get install fluidsynth", allow_module_level=True)
pytest.importorskip("pretty_midi", reason="pretty_midi not installed (make install)")
load_example("make_corpus")  # make_piano_corpus imports it by name
mp = load_example("make_piano_corpus")
if not mp.installed_pianos():
    pytest.skip("no piano soundfont: sudo apt-get install fluid-soundfont-gm", allow_module_level=True)

PIECES = ("bach/bwv66.6", "bach/bwv269", "bach/bwv153.1", "bach/bwv86.6")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from music21 import corpus

    bad = tmp_path_factory.mktemp("scores") / "broken.xml"
    bad.write_text("<score-partwise><part id='P1'>not music")
    pieces = [mp.Piece(p, "bach", str(corpus.getWork(p))) for p in PIECES]
    pieces.append(mp.Piece("bach/broken", "bach", str(bad)))
    out = tmp_path_factory.mktemp("piano")
    real = mp.list_candidates
    mp.list_candidates = lambda: pieces  # the module's own name: the build reads it there
    try:
        m = mp.build_piano_corpus(out, "small", seed=0, workers=2, max_pieces=3, max_seconds=5,
                                  pairs=2)  # more than there are: every piece is tried
        yield out, m, pieces
    finally:
        mp.list_candidates = real


def test_renditions_are_24k_mono_piano_split_by_piece(built) -> None:
    out, m, _ = built
    assert m["pieces"] == 3 and m["format"] == "aimusic.corpus/1"
    assert len([e for e in m["entries"] if e["source"] == "piano"]) == 6
    by_piece: dict[str, list[dict]] = {}
    for e in m["entries"]:
        if e["source"] != "piano":
            continue
        info = audio_info(out / e["path"])
        assert info.sample_rate == 24000 and info.channels == 1
        x = load_audio(out / e["path"], 24000)
        assert 1.0 <= x.size / 24000 <= 5.0 and np.sqrt(np.mean(x ** 2)) > 0.01
        assert e["path"].startswith(f"piano/{e['split']}/") and -4 <= e["transpose"] <= 4
        by_piece.setdefault(e["piece"], []).append(e)
    for renditions in by_piece.values():
        assert len({e["split"] for e in renditions}) == 1  # a piece's renditions: one split
        assert len({e["room"]["rt60"] for e in renditions}) == 1  # and one room
        if len(mp.installed_pianos()) > 1:
            assert len({e["piano"] for e in renditions}) == 2  # on two pianos


def test_pairs_are_one_performance_on_two_pianos_and_a_fourth_up(built) -> None:
    out, m, _ = built
    (piece,) = m["pairs"]["pieces"]  # a piece the corpus does not hold
    assert piece not in {e["piece"] for e in m["entries"] if e["source"] == "piano"}
    name = mp.Piece(piece, "bach", "").name + ".wav"
    a, b, up = (load_audio(out / "pairs" / d / name, 24000) for d in ("timbre/a", "timbre/b", "pitch/b"))
    assert a.size == b.size == up.size and not np.allclose(a, b)
    assert (out / "pairs/pitch/a" / name).samefile(out / "pairs/timbre/a" / name)
    from aimusic.gen import notes as N

    if N.available():  # the same notes on the other piano; five semitones up on pitch/b
        ta, tb, tu = (N.transcribe(x, 24000) for x in (a, b, up))
        assert N.key_agreement(ta, tb) > 0.8 > N.key_agreement(ta, tu)


def test_a_bad_score_is_skipped_and_a_rerun_keeps_everything(built) -> None:
    out, m, pieces = built
    assert [s["id"] for s in m["skipped"]] == ["bach/broken"] and m["skipped"][0]["reason"]
    mtimes = {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in m["entries"]}
    again = mp.build_piano_corpus(out, "small", seed=0, workers=2, max_pieces=3, max_seconds=5,
                                  pairs=2)  # more than there are: every piece is tried
    assert again["reused"] == 9 and [s["id"] for s in again["skipped"]] == ["bach/broken"]
    assert {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in again["entries"]} == mtimes


def test_the_plan_depends_only_on_the_seed() -> None:
    pianos = [("a.sf2", 0), ("b.sf2", 0), ("c.sf2", 0)]
    a = [mp.rendition_plan("piece", k, 0, pianos) for k in range(3)]
    assert a == [mp.rendition_plan("piece", k, 0, pianos) for k in range(3)]
    assert len({p["soundfont"] for p in a}) == 3  # one piano per rendition while there are enough
    assert mp.room_for("piece", 0) == mp.room_for("piece", 0) != mp.room_for("piece", 1)


def test_a_run_stopped_before_its_manifest_loses_nothing(tmp_path, monkeypatch) -> None:
    from music21 import corpus

    pieces = [mp.Piece(p, "bach", str(corpus.getWork(p))) for p in PIECES[:2]]
    monkeypatch.setattr(mp, "list_candidates", lambda: pieces)
    write_json = mp.write_json

    def stopped(*args, **kwargs):  # the run ends (a kill, a reboot) before its manifest
        raise KeyboardInterrupt

    monkeypatch.setattr(mp, "write_json", stopped)
    with pytest.raises(KeyboardInterrupt):
        mp.build_piano_corpus(tmp_path, "small", seed=0, workers=1, max_pieces=2, max_seconds=3,
                              pairs=0)
    assert not (tmp_path / "manifest.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    assert len(mtimes) == 4
    monkeypatch.setattr(mp, "write_json", write_json)
    m = mp.build_piano_corpus(tmp_path, "small", seed=0, workers=1, max_pieces=2, max_seconds=3,
                              pairs=0)
    assert m["reused"] == 4 and {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")} == mtimes
    assert not (tmp_path / "build.journal.jsonl").exists()  # gone once the manifest is written
