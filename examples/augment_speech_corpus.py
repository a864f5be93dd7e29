"""Widen a speech corpus's range of voices: each training utterance read back at other rates.

    python examples/augment_speech_corpus.py data/speech --out data/speech-aug
    aimusic tokenize data/speech-aug/wav -o DIR --models M
    # then train-lm DIR, and train-tts DIR --corpus data/speech-aug

Resampling an utterance by f and playing it at the original rate scales its pitch and
formants by f and its duration by 1 / f: a higher or lower voice from a shorter or longer
vocal tract, as speed perturbation (Ko et al., 2015) and vocal-tract-length perturbation
do. Each factor makes a new voice, ``SPEAKER@f``, of the train split only: val/ and test/
utterances (the held-out test voices among them) are linked unchanged, never augmented.
The output is a corpus like the input: wav/ (the originals as symbolic links) and
manifest.jsonl (new entries carry ``"augment": {"of": SPEAKER, "factor": f}``), and a
manifest.json that names its source and factors. Files already made are kept, so an
interrupted run resumes; every file is written whole or not at all.

Why: with the corpus's 34 training voices, a reading LM that hears the voice names an
unseen test voice's tokens right 1 time in 20; trained with four factors (150 voices),
8 times in 20 (research/JOURNAL.md, "Our semantic tokens say who speaks").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from aimusic.audio import AudioError, audio_info, load_audio, rate_shift, save_audio
from aimusic.fileio import atomic_path, write_json

FACTORS = (0.84, 0.92, 1.09, 1.19)  # pitch and formants -17% .. +19%: three semitones each way
FORMAT = "aimusic.speech-corpus/1"


def shifted_path(path: str, speaker: str, factor: float) -> str:
    """wav/train/SPEAKER/u.wav -> wav/train/SPEAKER@f/u.wav (the voice is the folder)."""
    p = Path(path)
    if p.parent.name != speaker:
        raise ValueError(f"{path}: not in a folder named after its speaker {speaker!r}")
    return (p.parent.parent / f"{speaker}@{factor:g}" / p.name).as_posix()


def augment(src: Path, out: Path, factors: tuple[float, ...] = FACTORS,
            log=print) -> dict:
    """Build (or complete) the augmented corpus in ``out``; returns its summary."""
    src, out = Path(src), Path(out)
    mf = src / "manifest.jsonl"
    if not mf.is_file():
        raise SystemExit(f"{src}: no manifest.jsonl; build one with examples/make_speech_corpus.py")
    if out.resolve() == src.resolve():
        raise SystemExit(f"--out {out} is the source corpus: give another folder")
    if any(not f > 0 or f == 1 for f in factors):
        raise SystemExit(f"factors {factors}: each must be positive and not 1")
    entries = [json.loads(ln) for ln in mf.read_text().splitlines() if ln.strip()]
    summary_in = json.loads((src / "manifest.json").read_text()) \
        if (src / "manifest.json").is_file() else {}
    rows, made, kept, failed = [], 0, 0, []
    t0 = time.monotonic()
    for k, e in enumerate(entries):
        original, linked = src / e["path"], out / e["path"]
        if not linked.exists():
            linked.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(original.resolve(), linked)
        rows.append(e)
        if e.get("split") != "train":
            continue
        audio = None
        for f in factors:
            path = shifted_path(e["path"], e["speaker"], f)
            target = out / path
            try:
                if target.is_file():
                    kept += 1
                    duration = audio_info(target).duration
                else:
                    if audio is None:
                        sr = audio_info(original).sample_rate
                        audio = load_audio(original, sr)
                    y = rate_shift(audio, f)
                    save_audio(target, y, sr)
                    made += 1
                    duration = len(y) / sr
            except AudioError as err:  # unreadable: reported, the rest goes on
                failed.append({"path": e["path"], "reason": str(err)})
                break
            rows.append({**e, "path": path, "speaker": f"{e['speaker']}@{f:g}",
                         "key": f"{e.get('key', e['path'])}@{f:g}",
                         "duration": round(duration, 3),
                         "augment": {"of": e["speaker"], "factor": f}})
        if (k + 1) % 500 == 0:
            log(f"  {k + 1}/{len(entries)} utterances: {made} made, {kept} kept "
                f"({time.monotonic() - t0:.0f} s)")
    speakers = list(summary_in.get("speakers", []))
    talent = {s["speaker"]: s.get("talent") or s["speaker"] for s in speakers}
    for sp in sorted({r["speaker"] for r in rows if "augment" in r}):
        of = sp.rsplit("@", 1)[0]
        speakers.append({"speaker": sp, "augment_of": of, "talent": talent.get(of, of)})
    summary = {
        "format": FORMAT, "augmented_from": str(src), "factors": list(factors),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "test_speakers": summary_in.get("test_speakers", []),
        "utterances": len(rows), "made": made, "kept": kept, "failed": failed,
        "voices": len({r["speaker"] for r in rows}), "speakers": speakers,
    }
    with atomic_path(out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json(out / "manifest.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc.split("\n\n", 1)[1])
    ap.add_argument("corpus", type=Path, help="a speech corpus (make_speech_corpus.py)")
    ap.add_argument("--out", type=Path, required=True, help="the augmented corpus")
    ap.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                    help="rate factors, comma-separated (default: %(default)s)")
    a = ap.parse_args(argv)
    try:
        factors = tuple(float(f) for f in a.factors.split(",") if f.strip())
    except ValueError:
        ap.error(f"--factors {a.factors!r}: give numbers, e.g. 0.9,1.1")
    t0 = time.monotonic()
    s = augment(a.corpus, a.out, factors)
    print(f"{a.out}: {s['utterances']} utterances of {s['voices']} voices ({s['made']} made, "
          f"{s['kept']} kept, {len(s['failed'])} unreadable) in {time.monotonic() - t0:.0f} s")
    for f in s["failed"][:8]:
        print(f"  skipped {f['path']}: {f['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
