"""Copy a trained models directory into the package (``aimusic/bundled/<name>``).

    python examples/bundle_models.py runs/gpu2/models --name music
    python examples/bundle_models.py voice/models --name voice --stages semantic,coarse,fine,reading

The codec and the semantic model define the tokens, so they are copied bit for bit: their
content hashes, which every LM records in ``depends``, stay valid, and a prompt is
tokenized exactly as the training data was. The LMs only turn tokens into probabilities;
they are stored as float16 (half the bytes; `aimusic eval lm` on held-out tokens shows
what it costs) and loaded back into float32. The copied chain is loaded and checked
before the script says it is done; a ``sampling.json`` (the sampling defaults the figures
were measured with) is copied beside it. Only replace bundled models when a measured figure
improves: each replacement grows the repository for good.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from aimusic.artifacts import load_artifact, save_artifact
from aimusic.fileio import file_hash
from aimusic.gen.chain import SAMPLING_FILE
from aimusic.lm.model import FORMAT_VERSION, lm_path

ROOT = Path(__file__).resolve().parents[1]
TOKEN_MODELS = ("codec.safetensors", "semantic.safetensors")


def _save_half(art, tensors: dict[str, torch.Tensor], dst: Path) -> None:
    """``tensors`` (floating ones as float16) to ``dst`` with ``art``'s kind, config and
    depends; ``extra`` says so and keeps the float32 file's hash."""
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    extra = {**art.meta["extra"], "stored_as": "float16", "float32_hash": art.hash}
    save_artifact(dst, tensors, art.kind, art.version, art.config, art.depends, extra)


def half_lm(src: Path, dst: Path) -> None:
    """The LM at ``src`` with its floating tensors as float16, metadata kept; an LM already
    stored as float16 is copied bit for bit (the same file, the same hash)."""
    art = load_artifact(src, "lm", FORMAT_VERSION)
    if art.meta["extra"].get("stored_as") == "float16":
        shutil.copyfile(src, dst)
        return
    _save_half(art, art.tensors, dst)


def half_codec(src: Path, dst: Path) -> None:
    """The codec at ``src`` with weight norm folded and its weights stored as float16.

    Run it *before* tokenizing (the LMs record the codec's hash), and measure what it costs
    with `aimusic eval codec` on both files: the speech codec with its inverse-STFT decoder
    is 23 MB in float32, which with four LMs would pass the voice bundle's 40 MB."""
    from aimusic.codec.model import FORMAT_KIND, TRAINING_ONLY, load_codec
    from aimusic.codec.model import FORMAT_VERSION as CODEC_VERSION

    art = load_artifact(src, FORMAT_KIND, CODEC_VERSION)
    weights = load_codec(src).fold_weight_norm().state_dict()
    _save_half(art, {k: v for k, v in weights.items() if not k.endswith(TRAINING_ONLY)}, dst)


def bundle(src: Path, out: Path, stages: list[str], half: bool = True) -> list[Path]:
    from aimusic.gen.chain import load_chain

    missing = [n for n in TOKEN_MODELS + tuple(f"lm-{s}.safetensors" for s in stages)
               if not (src / n).exists()]
    if missing:
        sys.exit(f"{src}: missing {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    keep = {lm_path(out, s) for s in stages}  # a stage the new set does not ship (its fine
    for old in set(out.glob("lm-*.safetensors")) - keep:  # LM, say) would be loaded beside
        old.unlink()  # the new ones and refused
    written = []
    for name in TOKEN_MODELS:
        shutil.copyfile(src / name, out / name)
        written.append(out / name)
    if (src / SAMPLING_FILE).exists():  # the sampling the models' figures were measured with
        shutil.copyfile(src / SAMPLING_FILE, out / SAMPLING_FILE)
    else:
        (out / SAMPLING_FILE).unlink(missing_ok=True)
    for s in stages:
        name = f"lm-{s}.safetensors"
        if half:
            half_lm(src / name, out / name)
        else:
            shutil.copyfile(src / name, out / name)
        written.append(out / name)
    chain = load_chain(out, "flat", torch.device("cpu"))  # refuses hashes that do not match
    if "reading" in stages:  # the voice bundle: `speak`'s reading LM reads this semantic model
        from aimusic.lm.model import load_lm
        from aimusic.voice.tts import check_reader

        check_reader(chain, load_lm(out / "lm-reading.safetensors", "reading"))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="trained models directory")
    ap.add_argument("--name", default="music", help="bundle name: aimusic/bundled/NAME")
    ap.add_argument("--stages", default="semantic,coarse,fine", help="LM stages to ship")
    ap.add_argument("--float32", action="store_true", help="keep the LMs in float32")
    ap.add_argument("--half-codec", type=Path, metavar="DST",
                    help="only write SRC (a codec file) to DST as float16, then stop")
    ap.add_argument("--half-lm", type=Path, metavar="DST",
                    help="only write SRC (an LM file) to DST as float16, then stop")
    a = ap.parse_args()
    for dst, half in ((a.half_codec, half_codec), (a.half_lm, half_lm)):
        if dst:
            half(a.src, dst)
            print(f"{dst}  {dst.stat().st_size / 1e6:.1f} MB  {file_hash(dst)}")
            return
    out = ROOT / "aimusic" / "bundled" / a.name
    files = bundle(a.src, out, a.stages.split(","), half=not a.float32)
    total = sum(f.stat().st_size for f in files)
    for f in files:
        print(f"{f.relative_to(ROOT)}  {f.stat().st_size / 1e6:.1f} MB  {file_hash(f)}")
    print(f"total {total / 1e6:.1f} MB; write the figures into {out.relative_to(ROOT)}/MODEL_CARD.md")


if __name__ == "__main__":
    main()
