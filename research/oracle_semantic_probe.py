"""Which stage holds the continuations back: the semantic LM or the acoustic stages?

For each clip the acoustic stages (coarse LM, and fine where the chain has one) render the
*truth's* semantic tokens after the prompt (`gen.chain.render_semantic`) instead of the
semantic LM's. If that row scores near the truth through the codec, the semantic LM is what
the continuations lack; if it scores near the chain's own continuation, the acoustic stages
are.

    python research/oracle_semantic_probe.py data/corpus/recorded/test --models models/music2 \
        --clips 12 --out oracle.json
    python research/continuation_compare.py oracle.json:oracle RUN/metrics.json:flat

The clips are those `aimusic eval continuation` takes with the same --clips, --seconds,
--prompt-seconds and --seed (same files, same start, same seeds), so its metrics.json
compares row by row. Sampling: the models folder's sampling.json, as `continue` uses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aimusic.audio import list_audio_files  # noqa: E402
from aimusic.gen import coherence as C  # noqa: E402
from aimusic.gen.chain import decode_codes, encode_prompt, load_chain, render_semantic  # noqa: E402
from aimusic.gen.evaluate import load_clips, reference_agreements  # noqa: E402


def oracle_continuation(chain, prompt: np.ndarray, truth: np.ndarray, prompt_seconds: float,
                        seed: int) -> np.ndarray:
    sr, hop = chain.sample_rate, chain.token_samples
    limit = min(chain.max_prompt_tokens(), int(prompt_seconds * sr) // hop)
    sem, codes = encode_prompt(chain, prompt, limit)
    P = sem.numel()
    n = -(-truth.size // hop)
    x = np.concatenate([prompt[prompt.size - P * hop:], truth,
                        np.zeros(n * hop - truth.size, np.float32)]).astype(np.float32)
    given = torch.from_numpy(chain.semantic.tokens(x)).long()[P:P + n]
    if given.numel() < n:  # the semantic model's last window: hold its last token
        given = torch.cat([given, given[-1:].repeat(n - given.numel())])
    new_codes, _ = render_semantic(chain, sem, codes, given, chain.sampling(), seed)
    y = decode_codes(chain, new_codes)
    return np.pad(y, (0, max(0, truth.size - y.size)))[:truth.size].astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--prompt-seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--notes", action="store_true", help="the note judge's figures too")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    chain = load_chain(a.models, "flat")
    sr = chain.sample_rate
    files = [f for p in a.inputs for f in list_audio_files(p)]
    items, skipped = load_clips(files, sr, a.prompt_seconds, a.seconds, 0.0, a.clips)
    feats = [C.features(c.truth, sr) for c in items]
    clips = []
    if a.notes:
        from aimusic.gen import notes as N
    for i, clip in enumerate(items):
        fp = C.features(clip.prompt, sr)
        agree = reference_agreements(fp, feats, i)
        y = oracle_continuation(chain, clip.prompt, clip.truth, a.prompt_seconds, a.seed + i)
        agree["oracle"] = C.agreement(fp, C.features(y, sr))
        entry = {"name": clip.name, "source": clip.source, "start": round(clip.start, 3),
                 "agreement": agree}
        if a.notes:
            pn = N.transcribe(clip.prompt, sr)
            entry["notes"] = {"truth": N.judge(pn, N.transcribe(clip.truth, sr)),
                              "oracle": N.judge(pn, N.transcribe(y, sr))}
        clips.append(entry)
        print(f"{i + 1}/{len(items)} {clip.name}: oracle "
              + " ".join(f"{m} {agree['oracle'][m]:.2f}" for m in C.MEASURES), flush=True)
    truth = [c["agreement"]["truth"] for c in clips]
    floor = [c["agreement"]["floor"] for c in clips]
    out = {"probe": "oracle semantic tokens", "models": str(a.models), "clips": clips,
           "skipped": skipped,
           "coherence": {r: C.coherence([c["agreement"][r] for c in clips], truth, floor,
                                        reflected=r != "floor") for r in ("truth", "oracle")}}
    if a.notes:
        out["notes"] = {r: {k: float(np.mean([c["notes"][r][k] for c in clips]))
                            for k in clips[0]["notes"][r]} for r in ("truth", "oracle")}
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(a.out)
    print("oracle coherence:", {k: round(v, 3) for k, v in out["coherence"]["oracle"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
