"""A clip and its round trip through a codec, as stacked linear-frequency spectrograms:
do its harmonics survive as lines?

    python examples/codec_spectrogram.py data/corpus/rendered/test/X.wav \\
        --codec aimusic/bundled/music/codec.safetensors --codec models/codec.safetensors \\
        --start 5 --seconds 6 --max-hz 4000 -o docs/codec-roundtrip.png

Rows from the top, a white rule between them: the original, then each codec's round trip
at its full bitrate (or ``--bandwidth``), in the order given (printed when done).
Frequency is linear from 0 Hz (bottom) to ``--max-hz`` (top), 4096-point STFT (5.9 Hz per
bin at 24 kHz), 80 dB of range below the original's loudest bin, the same scale for every
row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import load_audio
from aimusic.codec.model import load_codec
from aimusic.codec.stream import roundtrip
from aimusic.report import colorize, write_png

N_FFT, HOP = 4096, 256


def spectrogram_db(x: np.ndarray, sr: int, max_hz: float) -> np.ndarray:
    """[bins up to max_hz, frames] in dB, low frequencies first."""
    spec = torch.stft(torch.from_numpy(x), N_FFT, HOP, N_FFT, torch.hann_window(N_FFT),
                      return_complex=True).abs().pow(2).numpy()
    keep = int(max_hz / (sr / N_FFT)) + 1
    return 10 * np.log10(spec[:keep] + 1e-12)


def through(path: Path, x: np.ndarray, kbps: float | None) -> np.ndarray:
    codec = load_codec(path)
    return roundtrip(codec, x, codec.cfg.levels_for(kbps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio", type=Path)
    ap.add_argument("--codec", type=Path, action="append", default=[], required=True)
    ap.add_argument("--bandwidth", type=float, help="kbps (default: every level)")
    ap.add_argument("--start", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--max-hz", type=float, default=4000.0)
    ap.add_argument("--height", type=int, default=240, help="pixels per row")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    sr = 24000
    x = load_audio(a.audio, sr, offset=a.start, duration=a.seconds)
    rows = [spectrogram_db(x, sr, a.max_hz)]
    rows += [spectrogram_db(through(c, x, a.bandwidth), sr, a.max_hz) for c in a.codec]
    top = rows[0].max()
    images = []
    for db in rows:
        v = (db - (top - 80.0)) / 80.0  # [bins, frames], 0 at 80 dB below the loudest
        # resample the bins to the row's height, low frequencies at the bottom
        idx = np.linspace(0, db.shape[0] - 1, a.height).round().astype(int)[::-1]
        img = colorize(v[idx])
        images += [img, np.full((4, img.shape[1], 3), 255, np.uint8)]  # a white rule between
    write_png(a.out, np.concatenate(images[:-1]))
    names = ["original", *[str(c) for c in a.codec]]
    print(f"{a.out}: rows from the top: {', '.join(names)}; 0-{a.max_hz:g} Hz, "
          f"{a.start:g}-{a.start + a.seconds:g} s of {a.audio}")


if __name__ == "__main__":
    main()
