"""Pack the music corpus's train and val splits for a device call (at most 64 MiB carried):
the middle ``--seconds`` of every recorded track and ``--rendered-seconds`` of every
rendered piece, as Ogg Vorbis, in one tar. The test splits are never read.

    python research/gpu_pack_music.py data/corpus .gpu/music.tar [--seconds 45]

Layout inside: {train,val}/{recorded,rendered}/<name>.ogg, so `aimusic train-codec
DIR/train --val-dir DIR/val` trains on both kinds and validates on both.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import soundfile as sf

from aimusic.audio import audio_info, list_audio_files, load_audio
from aimusic.fileio import atomic_path

SR = 24000


def pack(corpus: Path, out: Path, seconds: float, rendered_seconds: float) -> dict[str, float]:
    totals = {"files": 0.0, "seconds": 0.0}
    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        for split in ("train", "val"):
            for kind, length in (("recorded", seconds), ("rendered", rendered_seconds)):
                for f in list_audio_files(corpus / kind / split):
                    d = audio_info(f).duration
                    x = load_audio(f, SR, offset=max(0.0, d / 2 - length / 2), duration=length)
                    buf = io.BytesIO()
                    sf.write(buf, x, SR, format="OGG", subtype="VORBIS")
                    data = buf.getvalue()
                    info = tarfile.TarInfo(f"{split}/{kind}/{f.stem}.ogg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    totals["files"] += 1
                    totals["seconds"] += x.size / SR
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--rendered-seconds", type=float, default=20.0)
    a = ap.parse_args()
    t = pack(a.corpus, a.out, a.seconds, a.rendered_seconds)
    print(f"{a.out}: {t['files']:.0f} files, {t['seconds'] / 3600:.2f} h, "
          f"{a.out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
