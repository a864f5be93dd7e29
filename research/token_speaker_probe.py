"""How much of *who speaks* each kind of token carries: speaker ID from bags of tokens.

The measurement behind `speak`'s split (SPEAR-TTS's, docs/architecture.md "Text to
speech"): a reading LM that writes semantic tokens need not model the voice only if the
semantic tokens say little about the voice, while the codec codes, which the acoustic LMs
write in the prompt's voice, say much more. VALL-E's single model writes codec codes from
phonemes, so it must learn the voice and the words together.

For every voice of a token directory (`aimusic tokenize` of a speech corpus's wav
folder; each item's voice is its folder) the script takes ``--per-voice`` utterances,
enrols the first half (the mean of their normalized token histograms) and identifies each
of the rest as the enrolled voice with the most similar histogram (cosine), for the
semantic tokens and for each codec level. Codec levels are also read at the semantic
rate (every ``frames_per_token``-th frame), so each bag holds as many tokens as the
semantic one. Chance is 1 / voices.

With ``--reader LM --corpus CORPUS`` it also reads ``--sentences`` sentences of each
test voice (``test/`` items, never trained on) with that reading LM, hearing another
sentence of the voice first when the LM has a voice prefix, and identifies the voice of
the semantic tokens it writes against the same enrolled voices: the voice `speak` hands
the acoustic LMs.

    python research/token_speaker_probe.py voice3/tokens -o research/results/token-speaker-probe.json \
        --reader aimusic/bundled/voice/lm-reading.safetensors --corpus data/speech
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from aimusic.tokens.reader import TokenDataset


def histogram(tokens: np.ndarray, size: int) -> np.ndarray:
    h = np.bincount(tokens, minlength=size).astype(np.float64)
    return h / max(1e-12, float(np.linalg.norm(h)))


def identify(feats: dict[str, list[np.ndarray]]) -> float:
    """Nearest enrolled centroid (cosine) over the second half of each voice's items."""
    names = sorted(feats)
    C = np.stack([centroid(feats[n]) for n in names])
    hits = total = 0
    for k, n in enumerate(names):
        for f in feats[n][len(feats[n]) // 2:]:
            hits += int(np.argmax(C @ f) == k)
            total += 1
    return hits / max(1, total)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokens", type=Path)
    ap.add_argument("--per-voice", type=int, default=40)
    ap.add_argument("--levels", type=int, default=3, help="Codec levels to probe.")
    ap.add_argument("--reader", type=Path, action="append", default=[],
                    help="Reading LM(s) whose written tokens to identify; repeat.")
    ap.add_argument("--corpus", type=Path, default=Path("data/speech"))
    ap.add_argument("--sentences", type=int, default=10, help="Per test voice, for --reader.")
    ap.add_argument("--read-split", default="test", choices=("test", "val"),
                    help="--reader reads the test voices' sentences (never trained on), or "
                         "the val/ sentences of the training voices.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="What the token directory is, for the JSON.")
    ap.add_argument("-o", "--out", type=Path)
    a = ap.parse_args()

    ds = TokenDataset(a.tokens)
    m = ds.manifest
    clusters, K, fpt = int(m["clusters"]), int(m["codebook_size"]), int(m["frames_per_token"])
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, src in enumerate(ds.sources):
        parts = Path(src).parts
        if len(parts) >= 2:
            by_voice[parts[-2]].append(i)
    voices = {v: ix[: a.per_voice] for v, ix in by_voice.items() if len(ix) >= a.per_voice}
    if len(voices) < 2:
        print(f"{a.tokens}: fewer than 2 voices with {a.per_voice} items", file=sys.stderr)
        return 1
    kinds = ["semantic"] + [f"level {k}" for k in range(a.levels)] + \
        [f"level {k} at the semantic rate" for k in range(a.levels)]
    feats: dict[str, dict[str, list[np.ndarray]]] = {k: defaultdict(list) for k in kinds}
    for v, items in voices.items():
        for i in items:
            sem, codes = (t.numpy() for t in ds.item(i))
            feats["semantic"][v].append(histogram(sem, clusters))
            for k in range(a.levels):
                feats[f"level {k}"][v].append(histogram(codes[k], K))
                feats[f"level {k} at the semantic rate"][v].append(histogram(codes[k, ::fpt], K))
    english = [v for v in voices if not v.startswith("asterisk-")]
    result = {"tokens": str(a.tokens), "date": date.today().isoformat(),
              "command": "python " + " ".join(sys.argv), "note": a.note,
              "depends": m.get("depends", {}), "per_voice": a.per_voice,
              "voices": len(voices), "english_synthetic_voices": len(english),
              "chance": round(1 / len(voices), 4), "accuracy": {}}
    print(f"speaker ID from bags of tokens, {len(voices)} voices x {a.per_voice} utterances "
          f"(chance {1 / len(voices):.3f}); the {len(english)} English synthetic voices alone")
    for kind in kinds:
        every = identify(feats[kind])
        eng = identify({v: feats[kind][v] for v in english})
        result["accuracy"][kind] = {"all": round(every, 4), "english_synthetic": round(eng, 4)}
        print(f"  {kind:32s} {every:.3f}  {eng:.3f}")
    if a.reader:
        names = sorted(voices)
        C = np.stack([centroid(feats["semantic"][v]) for v in names])
        result["readers"] = {}
        split = a.read_split
        for path in a.reader:
            result["readers"][str(path)] = r = read_and_identify(
                path, ds, a.corpus, names, C, clusters, a.sentences, a.seed, a.read_split)
            print(f"  {path}: written tokens identified as their voice "
                  f"{r['accuracy']:.3f} ({r['sentences']} sentences of {r['voices']} {split} "
                  f"voices; voice prefix {r['voice_tokens']} tokens); most often taken for "
                  f"{r['taken_for'][:3]}")
    if a.out:
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def centroid(hists: list[np.ndarray]) -> np.ndarray:
    c = np.mean(hists[: len(hists) // 2], axis=0)
    return c / max(1e-12, float(np.linalg.norm(c)))


def read_and_identify(path: Path, ds: TokenDataset, corpus: Path, names: list[str],
                      C: np.ndarray, clusters: int, sentences: int, seed: int,
                      split: str = "test") -> dict:
    import torch

    from aimusic.lm.model import load_lm
    from aimusic.voice.evaluate import read_corpus
    from aimusic.voice.tts import read_text, transcripts_for

    lm = load_lm(path, "reading")
    phonemes = transcripts_for(ds.sources, read_corpus(corpus)[0])  # what train-tts reads
    tests: dict[str, list[int]] = defaultdict(list)
    for i, src in enumerate(ds.sources):
        parts = Path(src).parts
        if parts[0] == split and phonemes[i]:
            tests[parts[-2]].append(i)
    gen = torch.Generator().manual_seed(seed)
    hits, total, taken = 0, 0, defaultdict(int)
    for voice, items in sorted(tests.items()):
        items = items[-(sentences + 1):]  # not among the enrolled (the first half)
        for k, i in enumerate(items[:sentences]):
            prompt = ds.item(items[(k + 1) % len(items)])[0]  # another sentence, same voice
            said = read_text(lm, phonemes[i], generator=gen, voice=prompt).numpy()
            who = names[int(np.argmax(C @ histogram(said, clusters)))]
            hits += int(who == voice)
            total += 1
            taken[who] += 1
    return {"split": split, "accuracy": round(hits / max(1, total), 4), "sentences": total,
            "voices": len(tests), "voice_tokens": lm.cfg.voice_tokens,
            "taken_for": sorted(taken.items(), key=lambda kv: -kv[1])}


if __name__ == "__main__":
    sys.exit(main())
