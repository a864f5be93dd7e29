"""Listening reports: spectrogram PNGs and a self-contained HTML page beside the audio.

No plotting library: a PNG is a few lines of zlib, and a spectrogram needs no axes a
caption cannot give. Images and pages are written atomically (``fileio.atomic_path``).
"""

from __future__ import annotations

import html
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aimusic.fileio import atomic_path

# a dark-to-bright colour ramp (black, purple, red, orange, pale yellow), as in "magma"
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 253, 191]], dtype=np.float64)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """An RGB uint8 image [H, W, 3] as a PNG file."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)


def colorize(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] [H, W] -> RGB uint8 [H, W, 3] along the ramp."""
    x = np.clip(v, 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(x.astype(int), len(_RAMP) - 2)
    f = (x - i)[..., None]
    return (_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).round().astype(np.uint8)


def spectrogram_png(path: str | Path, audio: np.ndarray, sr: int, marks: Sequence[float] = (),
                    n_mels: int = 128, px_per_second: int = 50, height: int = 192,
                    range_db: float = 80.0) -> None:
    """Log-mel spectrogram of ``audio`` (low frequencies at the bottom), with a vertical
    line at each time in ``marks`` (seconds): cyan, dashed."""
    from aimusic.dsp import mel_spectrogram

    n_fft = 2048
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    with torch.no_grad():
        m = mel_spectrogram(x, sr, n_fft, n_mels, power=2.0).numpy()  # hop n_fft // 4
    db = 10 * np.log10(m + 1e-10)
    top = db.max() if db.size else 0.0
    v = (db - (top - range_db)) / range_db  # [mels, frames]
    frames_per_second = sr / (n_fft // 4)
    width = max(1, round(v.shape[1] / frames_per_second * px_per_second))
    cols = np.minimum((np.arange(width) * v.shape[1] / width).astype(int), v.shape[1] - 1)
    rows = np.minimum((np.arange(height) * n_mels / height).astype(int), n_mels - 1)
    img = colorize(v[rows][:, cols][::-1])
    for t in marks:
        c = int(round(t * px_per_second))
        if 0 <= c < width:
            dash = (np.arange(height) // 6) % 2 == 0
            img[dash, max(0, c - 1):c + 1] = (0, 255, 255)
    write_png(path, img)


def esc(x: object) -> str:
    return html.escape(str(x))


def table(header: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "") -> str:
    """An HTML table; floats print with 3 decimals."""

    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else esc(v)

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# A check a browser runs once the page has loaded: how many images decoded and how many
# audio elements exist, written onto <body> where a headless browser's DOM dump shows it.
_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesLoaded = ok + '/' + imgs.length;
  document.body.dataset.audio = document.querySelectorAll('audio').length;
});
</script>"""

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #888; }
.clip { margin: 2em 0; } .note { color: #555; font-size: 0.9em; }
audio { vertical-align: middle; margin-right: 1em; }
</style>"""


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title>{_STYLE}</head><body><h1>{esc(title)}</h1>\n"
            f"{body}\n{_CHECK}</body></html>\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
