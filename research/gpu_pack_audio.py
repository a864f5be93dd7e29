"""Pack a speaker-balanced subset of a corpus's wav folder as FLAC in one tar, for a device
call (which carries at most 64 MiB): the speech corpus's 7 h of 16-bit wav are about 800 MB,
and 30 minutes of them as FLAC about 35 MiB.

    python research/gpu_pack_audio.py data/speech/wav .gpu/speech.tar [--minutes 30]
        [--val-minutes 3] [--seed 0]

From SRC/train/<speaker>/ (or SRC/<speaker>/ when there is no train/ folder) files are
drawn at random, speaker by speaker in turn, until ``--minutes``; from SRC/val/ likewise
until ``--val-minutes``. SRC/test/ is never read: test voices stay unheard. Each file keeps
its path (suffix .flac), so `aimusic train-codec DIR` holds out the val/ folder as usual.
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from aimusic.audio import list_audio_files
from aimusic.fileio import atomic_path


def pick(files: list[Path], root: Path, seconds: float, rng: random.Random) -> list[Path]:
    """Files drawn speaker by speaker in turn (the folder under ``root``), at random within
    each, until their durations reach ``seconds``."""
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_speaker[f.relative_to(root).parts[0]].append(f)
    for fs in by_speaker.values():
        rng.shuffle(fs)
    chosen, total = [], 0.0
    while total < seconds and any(by_speaker.values()):
        for spk in sorted(by_speaker):
            if by_speaker[spk] and total < seconds:
                f = by_speaker[spk].pop()
                chosen.append(f)
                total += sf.info(str(f)).duration
    return chosen


def pack(src: Path, out: Path, minutes: float, val_minutes: float, seed: int = 0) -> dict[str, float]:
    """Write the tar; returns the seconds packed per split and the number of files."""
    rng = random.Random(seed)
    train_root = src / "train" if (src / "train").is_dir() else src
    train = [f for f in list_audio_files(train_root)
             if f.relative_to(train_root).parts[0] not in ("val", "test")]
    if not train:
        raise SystemExit(f"{train_root}: no audio files")
    val_root = src / "val"
    val = list_audio_files(val_root) if val_root.is_dir() else []
    chosen = [(f, Path("train") / f.relative_to(train_root))
              for f in pick(train, train_root, minutes * 60, rng)]
    chosen += [(f, Path("val") / f.relative_to(val_root))
               for f in pick(val, val_root, val_minutes * 60, rng)]
    seconds = {"train": 0.0, "val": 0.0, "files": float(len(chosen))}
    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        for f, rel in chosen:
            audio, sr = sf.read(str(f), dtype="int16")
            buf = io.BytesIO()
            sf.write(buf, audio, sr, format="FLAC", subtype="PCM_16")
            data = buf.getvalue()  # (libsndfile leaves the position at the header it rewrote)
            info = tarfile.TarInfo(str(rel.with_suffix(".flac")))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            seconds[rel.parts[0]] += len(audio) / sr
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--val-minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = pack(a.src, a.out, a.minutes, a.val_minutes, a.seed)
    print(f"{a.out}: {s['files']:.0f} files, {s['train'] / 60:.1f} min train, "
          f"{s['val'] / 60:.1f} min val, {a.out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
