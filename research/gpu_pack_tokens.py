"""Pack a token directory small enough for one device call (64 MiB): the coarse stage's data.

A device call carries at most 64 MiB. A speech token directory of 28 h is about 130 MB, most
of it the fine codec levels, which the semantic, coarse and reading stages never read. This
copies every shard byte for byte, header and metadata included, with the acoustic levels from
``--keep-levels`` on set to zero (they compress to nothing), and packs the copy as one
``.tar.xz``. The copy is still a valid token directory for ``train-lm --stage
semantic|coarse`` and ``train-tts``; never train ``fine`` on it.

``--subset NAME:REGEX`` also writes ``NAME/manifest.json`` listing only the items whose
source matches REGEX, with symbolic links to the shared shards: a second token directory
for a control run without a second copy of the tokens.

    python research/gpu_pack_tokens.py voice11/tokens --out .gpu/tok.tar.xz \
        --subset 'orig:^[^@]*$'

(``augment_speech_corpus.py`` names a re-read voice ``SPEAKER@RATE``: that subset is the
original recordings.)
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np


def zero_levels(src: Path, dst: Path, keep: int) -> None:
    """Copy shard ``src`` to ``dst`` with acoustic rows ``keep:`` set to zero."""
    raw = bytearray(src.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    info = header["acoustic"]
    if info["dtype"] != "I16":
        raise SystemExit(f"{src}: acoustic tokens are {info['dtype']}, expected I16")
    start, end = (8 + n + o for o in info["data_offsets"])
    levels, frames = info["shape"]
    acoustic = np.frombuffer(raw, dtype="<i2", count=levels * frames, offset=start)
    acoustic = acoustic.reshape(levels, frames).copy()
    acoustic[keep:] = 0
    raw[start:end] = acoustic.tobytes()
    dst.write_bytes(bytes(raw))


def pack(tokens: Path, out: Path, keep_levels: int = 3, subsets: tuple[str, ...] = (),
         name: str = "tok") -> None:
    """Write ``out`` (.tar.xz): ``tokens`` with levels ``keep_levels:`` zeroed, as folder
    ``name``, and a ``NAME/manifest.json`` over the same shards for each ``NAME:REGEX``."""
    manifest = json.loads((tokens / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        root.mkdir()
        shards = sorted(tokens.glob("shard-*.safetensors"))
        for p in shards:
            zero_levels(p, root / p.name, keep_levels)
        (root / "manifest.json").write_text(json.dumps(manifest))
        for spec in subsets:
            sub_name, rx = spec.split(":", 1)
            pattern = re.compile(rx)
            sub = root / sub_name
            sub.mkdir()
            items = [it for it in manifest["items"] if pattern.search(it["source"])]
            (sub / "manifest.json").write_text(json.dumps({**manifest, "items": items}))
            for p in shards:
                (sub / p.name).symlink_to(Path("..") / p.name)
            print(f"{sub_name}: {len(items)} of {len(manifest['items'])} items")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:xz", preset=6) as tar:
            tar.add(root, arcname=name)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB, {len(shards)} shards")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokens", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="the .tar.xz to write")
    ap.add_argument("--keep-levels", type=int, default=3, help="codec levels kept (coarse: 3)")
    ap.add_argument("--subset", action="append", default=[], metavar="NAME:REGEX")
    ap.add_argument("--name", default="tok", help="folder name inside the archive")
    args = ap.parse_args()
    pack(args.tokens, args.out, args.keep_levels, tuple(args.subset), args.name)

if __name__ == "__main__":
    main()
