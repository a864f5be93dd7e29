"""Onset-marked semantic tokens from a trained semantic model, and the plain tokens back.

    # the same clusters, each token also saying whether a note starts in it (1024 tokens)
    python research/semantic_onsets.py model aimusic/bundled/piano/semantic.safetensors \
        models/piano-onsets/semantic.safetensors
    # a token directory made with that model, with the flags dropped: the plain model's
    # tokens exactly (same clusters), for an A/B at one tokenization's cost
    python research/semantic_onsets.py drop data/tokens-onsets data/tokens-plain \
        --semantic aimusic/bundled/piano/semantic.safetensors

    # an LM of the plain tokens widened to the onset tokens (a warm start for train-lm --init):
    # each semantic id's row copied to its struck twin, the acoustic rows moved up
    python research/semantic_onsets.py widen aimusic/bundled/piano/lm-coarse.safetensors \
        models/piano-onsets-init/lm-coarse.safetensors --semantic models/piano-onsets/semantic.safetensors

``model`` writes a copy with ``onsets`` on (its clusters and weights unchanged; a new
file, so a new hash: LMs trained on the plain tokens refuse it). ``drop`` rewrites every
shard and the manifest with ``semantic % clusters`` and the plain model's hash and size.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aimusic.artifacts import read_metadata  # noqa: E402
from aimusic.fileio import write_json  # noqa: E402
from aimusic.semantic.model import SemanticModel, load_semantic, save_semantic  # noqa: E402
from aimusic.tokens.shards import MANIFEST, read_shard_metadata, write_safetensors  # noqa: E402


def make_model(src: Path, dst: Path) -> None:
    m = load_semantic(src)
    out = SemanticModel(replace(m.cfg, onsets=True))
    out.load_state_dict(m.state_dict())
    extra = {k: v for k, v in read_metadata(src)["extra"].items() if k != "parameters"}
    save_semantic(out, dst, depends={"clusters_of": m.source_hash},
                  extra={**extra, "onsets_added_to": str(src)})
    print(f"{dst}: {out.cfg.vocab} tokens ({out.cfg.clusters} clusters x struck or not)")


def drop(src: Path, dst: Path, semantic: Path) -> None:
    from safetensors.numpy import load_file

    plain = load_semantic(semantic)
    k = plain.cfg.clusters
    dst.mkdir(parents=True, exist_ok=True)
    for shard in sorted(src.glob("shard-*.safetensors")):
        meta = read_shard_metadata(shard)
        if meta is None:
            raise SystemExit(f"{shard}: unreadable")
        arrays = load_file(str(shard))
        arrays["semantic"] = (arrays["semantic"] % k).astype(arrays["semantic"].dtype)
        dep = json.loads(meta["depends"])
        cfg = json.loads(meta["config"])
        dep["semantic"], cfg["clusters"] = plain.source_hash, k
        meta["depends"] = json.dumps(dep, sort_keys=True, separators=(",", ":"))
        meta["config"] = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        write_safetensors(dst / shard.name, arrays, meta)
    man = json.loads((src / MANIFEST).read_text())
    man["depends"]["semantic"], man["clusters"] = plain.source_hash, k
    write_json(dst / MANIFEST, man)
    print(f"{dst}: plain tokens ({k}) of {src}")


def widen(src: Path, dst: Path, semantic: Path) -> None:
    import torch

    from aimusic.lm.model import TokenLM, load_lm, save_lm

    lm = load_lm(src)
    sem = load_semantic(semantic)
    k = lm.cfg.clusters
    if sem.cfg.vocab != 2 * k:
        raise SystemExit(f"{semantic}: {sem.cfg.vocab} tokens, expected {2 * k}")
    out = TokenLM(replace(lm.cfg, clusters=2 * k))
    state = dict(lm.state_dict())
    old = state["embed.weight"]
    a = lm.cfg.layout.acoustic_offset  # specials and semantic ids below, acoustic above
    new = torch.cat([old[:a], old[a - k:a], old[a:]])
    assert new.shape[0] == out.cfg.vocab, (new.shape, out.cfg.vocab)
    state["embed.weight"] = new
    out.load_state_dict(state, strict=False)
    depends = {**lm.depends, "semantic": sem.source_hash}
    extra = {key: v for key, v in read_metadata(src)["extra"].items() if key != "parameters"}
    save_lm(out, dst, depends=depends, extra={**extra, "widened_from": f"{src} {lm.source_hash}"})
    print(f"{dst}: {lm.cfg.stage} LM, {lm.cfg.vocab} -> {out.cfg.vocab} ids")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("model")
    a1.add_argument("src", type=Path)
    a1.add_argument("dst", type=Path)
    a2 = sub.add_parser("drop")
    a2.add_argument("src", type=Path)
    a2.add_argument("dst", type=Path)
    a2.add_argument("--semantic", type=Path, required=True)
    a3 = sub.add_parser("widen")
    a3.add_argument("src", type=Path)
    a3.add_argument("dst", type=Path)
    a3.add_argument("--semantic", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "widen":
        widen(a.src, a.dst, a.semantic)
    elif a.cmd == "model":
        make_model(a.src, a.dst)
    else:
        drop(a.src, a.dst, a.semantic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
