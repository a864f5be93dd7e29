"""How much of *what is said* each kind of token carries: a phoneme recognizer trained on it.

SPEAR-TTS's split, which `speak` uses, rests on semantic tokens that carry the words: the
coarse LM renders them, so what they do not hold cannot come back. This probe trains the
same small CTC recognizer (five residual convolutions) from each
representation to the manifest's phonemes (stress marks and word breaks left out) on
``--train-utts`` utterances of the training voices, and reports its phoneme error rate
(edit distance over reference length, greedy decoding) on held-out sentences of the
training voices (``val``) and on the test voices (never trained on). Lower is better; the
log-mel row is what the audio itself gives the same recognizer.

For token representations it also says how much of *who speaks* they carry (a codec's
from its first level), as
`token_speaker_probe.py` does: each training voice's val sentences are named as the
voice whose training utterances' mean token histogram is nearest (cosine); chance is
1 / voices. A semantic token that carries the words and not the voice is what the split
wants.

Representations (``--feature NAME=KIND[:PATH]``, repeatable):

* ``semantic:PATH``: a semantic model's tokens (25/s);
* ``semantic-raw:PATH``: the same model's standardized features before k-means;
* ``codec:PATH``: a codec's first ``--levels`` levels (the coarse LM's codes), each
  level's embedding summed, at the codec's frame rate;
* ``mel``: 80 log-mel bands at 100 frames/s, stacked 4 to a frame (25/s).

    python research/token_phone_probe.py data/speech \\
        --feature bundled=semantic:aimusic/bundled/voice/semantic.safetensors \\
        --feature codec=codec:aimusic/bundled/voice/codec.safetensors --feature mel=mel \\
        -o research/results/token-phone-probe.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aimusic.audio import load_audio
from aimusic.fileio import write_json
from aimusic.runtime import configure_threads
from aimusic.text.phonemes import SPECIALS, SYMBOL_TO_ID, VOCAB_SIZE, normalize_symbols
from aimusic.voice.evaluate import read_corpus

BLANK = 0  # CTC's blank takes the PAD id, which no target uses


def phone_ids(phonemes: str) -> list[int]:
    """The manifest's phoneme string -> inventory ids, without stress, word or clause marks."""
    return [SYMBOL_TO_ID[p] for p in normalize_symbols(phonemes.split()) if p not in SPECIALS]


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def greedy_ctc(logits: torch.Tensor, length: int) -> list[int]:
    """Best path of one utterance's logits [frames, classes]: repeats merged, blanks removed."""
    best = logits[:length].argmax(-1).tolist()
    out, last = [], BLANK
    for k in best:
        if k != last and k != BLANK:
            out.append(k)
        last = k
    return out


def bag_id(train: dict[str, list[np.ndarray]], test: dict[str, list[np.ndarray]],
           size: int) -> float:
    """Share of ``test`` token sequences named as their voice: nearest mean normalized
    histogram of that voice's ``train`` sequences (cosine)."""
    def hist(t: np.ndarray) -> np.ndarray:
        h = np.bincount(t.reshape(-1), minlength=size).astype(np.float64)
        return h / max(1e-12, float(np.linalg.norm(h)))

    names = sorted(n for n in train if train[n] and n in test)
    cents = np.stack([np.mean([hist(t) for t in train[n]], 0) for n in names])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True).clip(1e-12)
    hits = total = 0
    for k, n in enumerate(names):
        for t in test[n]:
            hits += int(np.argmax(cents @ hist(t)) == k)
            total += 1
    return hits / max(1, total)


class Featurizer:
    """One representation of an utterance: ints [frames, streams] or floats [frames, dim]."""

    def __init__(self, spec: str, levels: int) -> None:
        kind, _, path = spec.partition(":")
        self.kind, self.path = kind, path
        if kind in ("semantic", "semantic-raw"):
            from aimusic.semantic.model import load_semantic
            self.model = load_semantic(path)
            self.sr, self.vocab = self.model.cfg.sample_rate, self.model.cfg.clusters
        elif kind == "codec":
            from aimusic.codec.model import load_codec
            self.model = load_codec(path)
            self.sr, self.vocab, self.levels = (self.model.cfg.sample_rate,
                                                self.model.cfg.codebook_size, levels)
        elif kind == "mel":
            self.sr, self.vocab = 16000, 0
        else:
            raise SystemExit(f"unknown feature kind {kind!r} in {spec!r}")

    @property
    def discrete(self) -> bool:
        return self.kind in ("semantic", "codec")

    @torch.no_grad()
    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        if self.kind == "semantic":
            return torch.from_numpy(self.model.tokens(audio))[:, None]
        if self.kind == "semantic-raw":
            return self.model.features(x)[0].float()
        if self.kind == "codec":
            return self.model.encode(x[:, None], self.levels)[0].T.long()
        from aimusic.semantic.features import log_mel
        return log_mel(x, self.sr, 640, 4, 80)[0]


class Recognizer(nn.Module):
    """Tokens (summed embeddings per stream) or features -> phoneme logits per frame: five
    residual convolutions (kernel 5: each frame sees 10 frames either side, 0.4 s at 25/s)."""

    def __init__(self, vocab: int, streams: int, dim_in: int, width: int = 192,
                 depth: int = 5) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Embedding(vocab, width) for _ in range(streams)) \
            if vocab else None
        self.proj = None if vocab else nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, width))
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(width, VOCAB_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            h = torch.stack([e(x[..., k]) for k, e in enumerate(self.embed)]).sum(0)
        else:
            assert self.proj is not None
            h = self.proj(x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.drop(nn.functional.gelu(conv(norm(h).transpose(1, 2))).transpose(1, 2))
        return self.out(h)


def pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def probe(feat: Featurizer, data: dict[str, list[tuple[torch.Tensor, list[int]]]],
          steps: int, batch: int, seed: int) -> dict:
    """Train a recognizer on data['train'], score PER on the others."""
    torch.manual_seed(seed)
    train = [(x, y) for x, y in data["train"] if len(x) >= len(y)]
    x0 = train[0][0]
    model = Recognizer(feat.vocab if feat.discrete else 0, x0.shape[1] if feat.discrete else 0,
                       0 if feat.discrete else x0.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    rng = random.Random(seed)
    t0, losses = time.monotonic(), []
    model.train()
    for _ in range(steps):
        items = rng.sample(train, min(batch, len(train)))
        xs, ys = [x for x, _ in items], [torch.tensor(y) for _, y in items]
        logp = model(pad(xs)).log_softmax(-1).transpose(0, 1)
        loss = ctc(logp, torch.cat(ys), torch.tensor([len(x) for x in xs]),
                   torch.tensor([len(y) for y in ys]))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    out: dict = {"steps": steps, "train_utts": len(train), "seconds": round(time.monotonic() - t0, 1),
                 "final_loss": round(float(np.mean(losses[-50:])), 3)}
    for split in ("val", "test"):
        errs = ref = 0
        with torch.no_grad():
            for i in range(0, len(data[split]), 64):
                part = data[split][i: i + 64]
                logits = model(pad([x for x, _ in part]))
                for k, (x, y) in enumerate(part):
                    errs += edit_distance(greedy_ctc(logits[k], len(x)), y)
                    ref += len(y)
        out[f"per_{split}"] = round(errs / max(1, ref), 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, help="speech corpus (manifest.jsonl)")
    ap.add_argument("--feature", action="append", required=True, metavar="NAME=KIND[:PATH]")
    ap.add_argument("--levels", type=int, default=3, help="codec levels read (default 3)")
    ap.add_argument("--train-utts", type=int, default=2000)
    ap.add_argument("--val-utts", type=int, default=400)
    ap.add_argument("--test-utts", type=int, default=400)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args()
    configure_threads()

    entries, _ = read_corpus(args.corpus)
    entries = [e for e in entries if e.get("phonemes") and e.get("lang", "en") == "en"]
    rng = random.Random(args.seed)
    chosen = {}
    for split, n in (("train", args.train_utts), ("val", args.val_utts), ("test", args.test_utts)):
        pool = [e for e in entries if e["split"] == split]
        rng.shuffle(pool)
        chosen[split] = pool[:n]
    audio: dict[tuple[int, str], np.ndarray] = {}  # (rate, path) -> samples, kept for all rows
    results: dict = {"date": str(date.today()), "command": " ".join(sys.argv),
                     "corpus": str(args.corpus),
                     "utterances": {s: len(v) for s, v in chosen.items()},
                     "voices": {s: len({e["speaker"] for e in v}) for s, v in chosen.items()},
                     "features": {}}
    for spec in args.feature:
        name, _, kind = spec.partition("=")
        feat = Featurizer(kind, args.levels)
        t0 = time.monotonic()
        data: dict[str, list] = {}
        bags: dict[str, dict[str, list[np.ndarray]]] = {}  # split -> voice -> level-1 tokens
        frames = seconds = 0.0
        for split, items in chosen.items():
            data[split], bags[split] = [], {}
            for e in items:
                key = (feat.sr, str(e["file"]))
                if key not in audio:
                    audio[key] = load_audio(e["file"], feat.sr)
                x = feat(audio[key])
                frames, seconds = frames + len(x), seconds + len(audio[key]) / feat.sr
                data[split].append((x, phone_ids(e["phonemes"])))
                if feat.discrete:
                    bags[split].setdefault(e["speaker"], []).append(x[:, 0].numpy())
        row = {"spec": kind, "frames_per_second": round(frames / seconds, 2),
               "featurize_seconds": round(time.monotonic() - t0, 1)}
        short = sum(len(x) < len(y) for x, y in data["train"])
        row["too_short_train_utts"] = short
        if feat.discrete:
            row["voice_id_val"] = round(bag_id(bags["train"], bags["val"], feat.vocab), 4)
        row.update(probe(feat, data, args.steps, args.batch, args.seed))
        results["features"][name] = row
        print(name, row, file=sys.stderr, flush=True)
        if args.out:
            write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
