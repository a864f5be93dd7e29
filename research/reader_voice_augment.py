"""Do more voices teach the reading LM to follow an unseen one? A probe, not a pipeline.

The reader that hears the voice (`train-tts --voice-tokens 75`) writes the heard voice's
semantic tokens for voices it trained on, not for the two unseen test voices
(research/JOURNAL.md, "Our semantic tokens say who speaks"). This script adds voices the
cheapest way there is: every transcribed training sentence is also read back at other
rates (resampled by a factor f and played at the original rate: pitch and formants
scaled by f, duration by 1/f, as speed perturbation and vocal-tract-length perturbation
do), each factor counting as a new voice ("VOICE@f"). Their semantic tokens are
computed here with the token directory's semantic model (no codec, no files written).
A reader trained on the originals plus these, with the same settings and steps as
`train-tts`, is saved for `token_speaker_probe.py --reader` to judge on the test voices.

    python research/reader_voice_augment.py voice3/tokens --semantic voice3/models/semantic.safetensors \\
        -o voice10/lm-reading.safetensors --steps 513
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from aimusic.audio import load_audio, rate_shift
from aimusic.lm.model import PRESETS, TokenLM, save_lm
from aimusic.lm.train import TRAIN_PRESETS, split_items
from aimusic.semantic.model import load_semantic
from aimusic.text import phonemes as ph
from aimusic.voice.tts import (
    VOICE_TOKENS,
    Reading,
    baselines,
    fit_reading,
    load_readings,
    reading_config,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokens", type=Path)
    ap.add_argument("--semantic", type=Path, required=True, help="The tokens' semantic model.")
    ap.add_argument("--corpus", type=Path, default=Path("data/speech"))
    ap.add_argument("--factors", default="0.84,0.92,1.09,1.19")
    ap.add_argument("--steps", type=int, default=513)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()

    model_cfg, train_cfg = PRESETS["small"](), TRAIN_PRESETS["small"]()
    train_cfg = dataclasses.replace(train_cfg, steps=a.steps)
    ds, readings, _ = load_readings(a.tokens, a.corpus, model_cfg.max_len, VOICE_TOKENS)
    semantic = load_semantic(a.semantic)
    if semantic.source_hash != ds.depends.get("semantic"):
        raise SystemExit(f"{a.semantic} is not the semantic model of {a.tokens}")
    sr = semantic.cfg.sample_rate
    tr, va = split_items([r.source for r in readings])
    train, val = [readings[i] for i in tr], [readings[i] for i in va]
    factors = [float(f) for f in a.factors.split(",")]
    wav = a.corpus / "wav"
    extra: list[Reading] = []
    t0 = time.monotonic()
    for k, r in enumerate(train):
        x = load_audio(wav / r.source, sr)
        src = Path(r.source)
        for f in factors:
            y = rate_shift(x, f)  # pitch and formants x f
            sem = torch.from_numpy(semantic.tokens(y))
            r2 = Reading(str(src.parent.parent / f"{src.parent.name}@{f:g}" / src.name),
                         r.phonemes, sem)
            if r2.length(VOICE_TOKENS) <= model_cfg.max_len:
                extra.append(r2)
        if k % 500 == 0:
            print(f"{k}/{len(train)} sentences, {len(extra)} read again, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    cfg = reading_config(model_cfg, ds, VOICE_TOKENS)
    voices = {r.voice for r in train + extra}
    print(f"{len(train)} sentences + {len(extra)} re-read, {len(voices)} voices; "
          f"{len(val)} to validate (originals only)", flush=True)
    torch.manual_seed(train_cfg.seed)
    model = TokenLM(cfg)
    r = fit_reading(model, train + extra, val, train_cfg, torch.device("cpu"))
    base = baselines(train, val, cfg.clusters)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_lm(model, a.out, depends=ds.depends,
            extra={"steps": r["step"], "val_ce": r["val_ce"], **base,
                   "augment": {"factors": factors, "sentences": len(train),
                               "re_read": len(extra), "voices": len(voices)},
                   "inventory_version": ph.INVENTORY_VERSION})
    print(f"{a.out}: val {r['val_ce']:.4f} (bigram {base['bigram_ce']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
