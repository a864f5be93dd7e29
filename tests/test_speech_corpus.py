"""The speech-corpus builder (examples/make_speech_corpus.py): real voices, a tiny build."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import load_example

from aimusic.audio import audio_info, load_audio, rms_db
from aimusic.text import phonemes as ph

ROOT = Path(__file__).resolve().parents[1]


msc = load_example("make_speech_corpus")
FAKE = msc.Voice("festival-no_such_voice", "festival", "no_such_voice", "festvox-aimusic-none")


def _need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed: sudo apt-get install espeak-ng")


def _installed(source: str) -> list[str]:
    found, _ = msc.find_voices(v for v in msc.VOICES if v.source == source)
    return [v.speaker for v in found]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, float]:
    """Two utterances of every installed voice (and a voice that is not installed)."""
    _need_espeak()
    out = tmp_path_factory.mktemp("speech")
    t0 = time.time()
    m = msc.build_corpus(out, size="small", seed=0, workers=2, voices=[*msc.VOICES, FAKE],
                         per_voice=2, log=lambda s: None)
    return out, m, time.time() - t0


def _lines(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]


def test_files_are_16k_mono_nonsilent_and_match_the_manifest(built) -> None:
    out, m, _ = built
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["format"] == "aimusic.speech-corpus/1" and summary["seed"] == 0
    assert summary["size"] == "small" and "created" in summary
    entries = _lines(out)
    assert entries == m["entries"] and summary["counts"]["utterances"] == len(entries)
    speakers = {e["speaker"] for e in entries}
    assert summary["counts"]["speakers"] == len(speakers) >= 24  # espeak alone gives 24
    assert set(summary["counts"]["per_speaker"]) == speakers
    for e in entries:
        assert {"path", "speaker", "source", "text", "phonemes", "duration", "split",
                "sample_rate"} <= set(e)
        assert e["sample_rate"] == 16000 and e["source"] in msc.SOURCES
        assert e["path"] == f"wav/{e['split']}/{e['speaker']}/{e['utt']}.wav"
        info = audio_info(out / e["path"])
        assert (info.sample_rate, info.channels, info.frames / 16000) == (16000, 1, e["duration"])
        x = load_audio(out / e["path"])
        assert rms_db(x) > -30 and 0.3 < e["duration"] <= 30
        assert np.abs(x[:800]).max() < 0.05  # 50 ms of quiet before the speech
    per_voice: dict[str, int] = {}
    for e in entries:
        per_voice[e["speaker"]] = per_voice.get(e["speaker"], 0) + 1
    assert max(per_voice.values()) <= 2
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.wav")}
    assert on_disk == {e["path"] for e in entries}


def test_phonemes_are_inventory_symbols_for_english(built) -> None:
    _, m, _ = built
    for e in m["entries"]:
        if e["lang"] == "en" and e["text"]:
            phones = ph.from_string(e["phonemes"])
            assert phones and ph.normalize_symbols(phones) == phones
            assert ph.decode(ph.encode(phones)) == phones
        else:
            assert e["phonemes"] is None


def test_test_voices_only_in_the_test_split(built) -> None:
    out, m, _ = built
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["test_speakers"] == ["flite-rms", "festival-ked_diphone"]
    for e in m["entries"]:
        assert (e["split"] == "test") == (e["speaker"] in msc.TEST_SPEAKERS)
    present = {e["speaker"] for e in m["entries"]} & set(msc.TEST_SPEAKERS)
    if not present:
        pytest.skip("neither test voice installed: sudo apt-get install flite festvox-kdlpc16k")
    # no text is in val for one speaker and in train for another
    splits: dict[str, set[str]] = {}
    for e in m["entries"]:
        if e["split"] != "test" and e["source"] != "asterisk":
            splits.setdefault(e["text"], set()).add(e["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_every_installed_engine_is_used(built) -> None:
    _, m, _ = built
    sources = {e["source"] for e in m["entries"]}
    for source in msc.SOURCES:
        if _installed(source):
            assert source in sources, f"{source} is installed but built nothing"
    assert m["counts"]["per_source"]["espeak"] == 48


def test_missing_voice_is_reported_not_fatal(built) -> None:
    _, m, _ = built
    missing = {v["speaker"]: v for v in m["missing_voices"]}
    assert "festival-no_such_voice" in missing
    assert "festvox-aimusic-none" in missing["festival-no_such_voice"]["install"]
    found, miss = msc.find_voices([FAKE])
    assert found == [] and miss[0]["speaker"] == FAKE.speaker


def test_no_voice_at_all_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    _need_espeak()
    monkeypatch.setattr(msc, "VOICES", (FAKE,))
    assert msc.main(["--out", str(tmp_path), "--size", "small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no voice available" in err and "festvox-aimusic-none" in err


def test_rerun_keeps_every_file_and_is_fast(built) -> None:
    out, m, first = built
    stamps = {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in m["entries"]}
    t0 = time.time()
    again = msc.build_corpus(out, size="small", seed=0, workers=2, voices=[*msc.VOICES, FAKE],
                             per_voice=2, log=lambda s: None)
    took = time.time() - t0
    assert again["reused"] == len(again["entries"]) == len(m["entries"])
    assert again["entries"] == m["entries"]
    assert {e["path"]: (out / e["path"]).stat().st_mtime_ns for e in again["entries"]} == stamps
    assert took < max(3.0, first / 2)


def test_choices_depend_only_on_the_seed() -> None:
    pool = msc.builtin_sentences()
    assert len(pool) >= 100 and len(set(pool)) == len(pool)
    v = msc.Voice("flite-awb", "flite", "awb", "flite")
    a = msc.pick_texts(v, pool, 20, 0)
    assert a == msc.pick_texts(v, list(reversed(pool)), 20, 0)
    assert a != msc.pick_texts(v, pool, 20, 1)
    assert a[:10] != msc.pick_texts(msc.Voice("flite-slt", "flite", "slt", "flite"), pool, 20, 0)[:10]
    assert [s for _, s in a].count("val") == 2  # 10 % of a voice's texts are val texts
    assert all(msc.text_split(t, 0) == s for t, s in a)
    bigger = msc.pick_texts(v, pool, 40, 0)
    assert {t for t, _ in a} <= {t for t, _ in bigger}  # a larger size keeps the picks
    test = msc.pick_texts(msc.Voice("flite-rms", "flite", "rms", "flite", test=True), pool, 5, 0)
    assert {s for _, s in test} == {"test"}
    assert msc.espeak_voices() == msc.espeak_voices() and len(msc.espeak_voices()) == 24
    assert len({v.speaker for v in msc.espeak_voices()}) == 24


def test_sentences_are_plain() -> None:
    text = ("Q: Why did the chicken cross the road? A: To get to the other side. "
            "Mr. Smith paid 5 dollars. THE END is near for us all. Short one. "
            'She said "hello there" -- and then she left the room quietly.')
    assert msc.clean_sentences(text) == [
        "Why did the chicken cross the road?", "To get to the other side.",
        "She said hello there, and then she left the room quietly."]
    for s in msc.sentence_pool():
        assert msc._SENTENCE_OK.fullmatch(s)


def test_transcripts_without_speech() -> None:
    assert msc.speech_text("[ascending tones]") is None
    assert msc.speech_text("at [@]") == "at"
    assert msc.speech_text("Thank you.") == "Thank you."
    assert msc.speech_text(None) is None and msc.speech_text("") is None
    assert msc.speech_text("<beep ascending>") is None and msc.speech_text("(beep)") is None
    assert msc.speech_text("Exchange (IAX) now") == "Exchange (IAX) now"


def test_finish_trims_pads_levels_and_drops() -> None:
    sr = msc.SR
    t = np.arange(sr) / sr
    speech = (0.3 * np.sin(2 * np.pi * 200 * t) * np.hanning(sr)).astype(np.float32)
    x = np.concatenate([np.zeros(sr // 2, np.float32), speech, np.zeros(sr, np.float32)])
    y = msc.finish(x)
    assert abs(len(y) / sr - 1.25) < 0.1  # ~1 s of sound + 0.1 s before + 0.15 s after
    assert abs(rms_db(y[np.abs(y) > 0.01]) - msc.TARGET_RMS_DB) < 3
    assert len(msc.finish(speech)) >= len(speech)  # no silence at the ends: padded
    with pytest.raises(ValueError, match="dropped: silent"):
        msc.finish(np.full(sr, 1e-4, np.float32))
    with pytest.raises(ValueError, match="dropped: shorter"):
        msc.finish(np.concatenate([np.zeros(sr, np.float32), speech[sr // 2: sr // 2 + 800]]))
    with pytest.raises(ValueError, match="dropped: no audio"):
        msc.finish(np.zeros(0, np.float32))


def test_augment_reads_training_utterances_back_as_new_voices(tmp_path: Path) -> None:
    aug = load_example("augment_speech_corpus")
    from aimusic.audio import save_audio

    src, out, sr = tmp_path / "speech", tmp_path / "aug", 16000
    t = np.arange(sr) / sr
    rows = []
    for split, speaker in (("train", "flite-awb"), ("test", "flite-rms")):
        path = f"wav/{split}/{speaker}/u0.wav"
        save_audio(src / path, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)
        rows.append({"path": path, "speaker": speaker, "split": split, "text": "a b c d",
                     "phonemes": "a", "duration": 1.0, "key": f"{speaker}/u0"})
    (src / "wav" / "train" / "flite-awb" / "bad.wav").write_bytes(b"not audio")
    rows.append({**rows[0], "path": "wav/train/flite-awb/bad.wav", "key": "bad"})
    (src / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "manifest.json").write_text(json.dumps({"speakers": [
        {"speaker": "flite-awb", "talent": "awb"}, {"speaker": "flite-rms"}]}))

    s = aug.augment(src, out, (0.8, 1.25), log=lambda _: None)
    got = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    new = {e["speaker"]: e for e in got if "augment" in e}
    assert set(new) == {"flite-awb@0.8", "flite-awb@1.25"}  # the test voice is never augmented
    assert s["made"] == 2 and s["voices"] == 4 and [f["path"] for f in s["failed"]] == \
        ["wav/train/flite-awb/bad.wav"]
    for f, e in ((0.8, new["flite-awb@0.8"]), (1.25, new["flite-awb@1.25"])):
        y = load_audio(out / e["path"], sr)
        peak = np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(np.abs(np.fft.rfft(y)))]
        assert abs(peak - 200 * f) < 3 and abs(e["duration"] - 1 / f) < 0.01, (f, peak)
        assert e["path"] == f"wav/train/flite-awb@{f:g}/u0.wav" and e["text"] == "a b c d"
    assert (out / "wav/test/flite-rms/u0.wav").is_symlink()
    talent = {x["speaker"]: x.get("talent") for x in s["speakers"]}
    assert talent["flite-awb@1.25"] == "awb"
    before = (out / new["flite-awb@0.8"]["path"]).stat().st_mtime_ns
    again = aug.augment(src, out, (0.8, 1.25), log=lambda _: None)  # a rerun keeps its files
    assert again["made"] == 0 and again["kept"] == 2
    assert (out / new["flite-awb@0.8"]["path"]).stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="not 1"):
        aug.augment(src, tmp_path / "x", (1.0,))


def test_packed_for_a_device_call_takes_speakers_in_turn_and_never_the_test_voices(tmp_path: Path) -> None:
    """research/gpu_pack_audio.py: a speaker-balanced subset of train/ and val/ as FLAC,
    paths kept, samples exact, test/ never read."""
    import tarfile

    import soundfile as sf

    from aimusic.audio import save_audio

    src, sr = tmp_path / "wav", 16000
    rng = np.random.default_rng(0)
    for rel in ["train/a/1", "train/a/2", "train/a/3", "train/b/1", "train/b/2", "val/a/9",
                "test/c/1"]:
        save_audio(src / f"{rel}.wav", 0.1 * rng.standard_normal(sr).astype(np.float32), sr)
    mod = load_example("gpu_pack_audio", "research")
    got = mod.pack(src, tmp_path / "s.tar", minutes=2.5 / 60, val_minutes=1 / 60)
    assert got == {"train": 3.0, "val": 1.0, "files": 4.0}
    with tarfile.open(tmp_path / "s.tar") as t:
        names = sorted(t.getnames())
        t.extractall(tmp_path / "x", filter="fully_trusted")
    assert [n.rsplit("/", 1)[0] for n in names] == ["train/a", "train/a", "train/b", "val/a"]
    for n in names:
        want = sf.read(str(src / n.replace(".flac", ".wav")), dtype="int16")[0]
        assert np.array_equal(sf.read(str(tmp_path / "x" / n), dtype="int16")[0], want)
