"""SPEAR-TTS's split against VALL-E's single stage, at the same CPU budget, measured.

`speak` uses SPEAR-TTS's split: a reading LM writes semantic tokens from phonemes (hearing
3 s of the voice's semantic tokens), then the coarse LM writes codec levels 1-3 from those
tokens, continuing the voice prompt's codes. VALL-E's alternative is one LM from phonemes
(of the prompt's transcript and the new text) and the prompt's codes straight to codes.
This script trains that single stage on the same token directory and scores both on the
test voices (never trained on), as bits per second of the new sentence's codec levels 1-3
given its text and another sentence of the same voice:

* single stage: ``-log2 p(codes_b | phonemes_a + phonemes_b, codes_a)``, exact;
* split: ``-log2 p(semantic_b | semantic_a[:75], phonemes_b)`` (the reader) plus
  ``-log2 p(codes_b | semantic, codes before)`` (the coarse LM, over windows as it
  generates: each half window of b's tokens scored after as much of the past as its
  context holds). That is the joint ``p(semantic_b, codes_b)``, an upper bound on the
  split's ``-log2 p(codes_b)``: if the split scores lower, it is the better model of the
  speech; if higher, the bound may be loose.

The single stage is the model of the other stages (``aimusic.lm.model.TokenLM``) laid out
as the ``delay`` stage (``aimusic.lm.layouts.delay_sequence``, MusicGen's pattern: one
step a frame, levels 1-3 predicted together, one step behind each other), with the
phonemes in place of the semantic prefix. VALL-E writes level 1 autoregressively and the
rest with a second, non-autoregressive model; the delay pattern does both in one model
and writes 75 steps a second, where the split writes 25 + 225. Training sequences are two
sentences of one voice, phonemes of both then codes of both (the layout it is scored and
would speak in), at most ``--max-len`` steps.

    AIMUSIC_THREADS=1 aimusic train-tts voice3/tokens --corpus data/speech --models S --minutes 12
    AIMUSIC_THREADS=1 aimusic train-lm voice3/tokens --stage coarse --models S --minutes 12
    AIMUSIC_THREADS=1 python research/tts_split_compare.py train voice3/tokens \
        --corpus data/speech --minutes 24 -o V/lm-single.safetensors
    python research/tts_split_compare.py score voice3/tokens --corpus data/speech \
        --split S --single V/lm-single.safetensors -o research/results/tts-split-compare.json
    python research/tts_split_compare.py speak --single V/lm-single.safetensors \
        --models voice3/models --items 10 --out O    # then: aimusic eval voice data/speech -g O

``train --no-prompt-text`` leaves the prompt sentence's phonemes out (what `speak --voice`
could use); ``train --no-prompt`` is the ablation with no prompt sentence at all (one
sentence a sequence, scored without the other); ``score --delay M`` also scores the
reader with an acoustic stage in the delay layout (``train-lm --stage delay`` on tokens
with levels 4 and up zeroed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from aimusic.fileio import write_json
from aimusic.gen.decode import Decoder
from aimusic.lm import layouts as L
from aimusic.lm.loop import lr_at, make_optimizer, plan_steps
from aimusic.lm.model import PRESETS, LMConfig, TokenLM, load_lm, next_token_loss, save_lm
from aimusic.lm.train import TRAIN_PRESETS, split_items
from aimusic.runtime import configure_threads
from aimusic.tokens.reader import TokenDataset
from aimusic.voice import layout as VL
from aimusic.voice.evaluate import read_corpus
from aimusic.voice.tts import VOICE_MATCH, transcripts_for

LEVELS = 3  # codec levels the coarse LM writes, and so the single stage
# no prompt sentence: phonemes, semantic tokens, codes, all empty (the --no-prompt ablation)
NO_PROMPT = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
             torch.zeros(LEVELS, 0, dtype=torch.long))
LN2 = math.log(2)


class Utterances:
    """The transcribed items of a token directory: phoneme ids, semantic tokens [N] and
    codes [LEVELS, 3N], grouped by voice (the item's folder) within each split."""

    def __init__(self, tokens: Path, corpus: Path) -> None:
        self.ds = TokenDataset(tokens)
        entries, _ = read_corpus(corpus)
        self.phonemes = transcripts_for(self.ds.sources, entries)
        self.fpt = self.ds.frames_per_token
        self.rate = float(self.ds.manifest["semantic_rate"])
        train, val = split_items(self.ds.sources)
        test = [i for i, s in enumerate(self.ds.sources) if s.split("/")[0] == "test"]
        self.splits = {"train": train, "val": val, "test": test}

    def voice(self, i: int) -> str:
        return Path(self.ds.sources[i]).parent.name

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sem, codes = self.ds.item(i)
        ph = torch.tensor(self.phonemes[i] or [], dtype=torch.long)
        return ph, sem, codes[:LEVELS, :self.fpt * sem.numel()]

    def by_voice(self, split: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i in self.splits[split]:
            if self.phonemes[i]:
                out.setdefault(self.voice(i), []).append(i)
        return out


def single_config(n_phonemes: int, codebook_size: int, max_len: int) -> LMConfig:
    """The ``small`` shape as a delay stage of LEVELS levels whose "semantic" ids are
    phonemes."""
    return LMConfig(**{**PRESETS["small"]().__dict__, "stage": "delay", "clusters": n_phonemes,
                       "levels": LEVELS, "codebook_size": codebook_size, "max_len": max_len})


def single_sequence(vocab: L.Vocab, a: tuple, b: tuple,
                    prompt_text: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Phonemes of a then b (of b alone without ``prompt_text``), then the delayed codes of
    a then b: ids, mask [T, LEVELS] and the first step of b's frames (for scoring)."""
    phon = torch.cat([a[0], b[0]]) if prompt_text else b[0]
    ids, mask = L.delay_sequence(vocab, phon, torch.cat([a[2], b[2]], -1))
    return ids, mask, phon.numel() + 1 + a[2].shape[-1]


def only_new_frames(mask: torch.Tensor, head: int, frames: int, new_from: int) -> torch.Tensor:
    """A delay sequence's mask [T, K] (``head`` prefix steps, then ``frames`` delayed frames)
    narrowed to levels 1-3 of frames ``new_from`` on, each at its delayed step."""
    target = torch.zeros(mask.shape[-1], frames, dtype=torch.long)
    target[:LEVELS, new_from:] = 1
    mask[:head] = False
    mask[head:] &= L.delay(target, pad=0).bool()
    return mask


def target_sequence(vocab: L.Vocab, a: tuple, b: tuple,
                    prompt_text: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``single_sequence`` with only b's frames as targets (each level at its delayed
    step): what the single stage is scored on."""
    ids, mask, first = single_sequence(vocab, a, b, prompt_text)
    fa, fb = a[2].shape[-1], b[2].shape[-1]
    return ids, only_new_frames(mask, first - fa, fa + fb, fa)


def pad_batch(seqs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(s[0].shape[0] for s in seqs)
    ids = torch.full((len(seqs), T, LEVELS), L.PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), T, LEVELS), dtype=torch.bool)
    for k, (i, m) in enumerate(seqs):
        ids[k, :i.shape[0]], mask[k, :m.shape[0]] = i, m
    return ids, mask


def fits(u: Utterances, a: int, b: int, max_len: int, prompt_text: bool = True) -> bool:
    pa, pb = (u.phonemes[a] or []) if prompt_text else [], u.phonemes[b] or []
    frames = u.fpt * int(u.ds.semantic_lengths[a] + u.ds.semantic_lengths[b])
    return len(pa) + len(pb) + 1 + frames + LEVELS - 1 <= max_len


def train(args: argparse.Namespace) -> int:
    u = Utterances(args.tokens, args.corpus)
    voices = u.by_voice("train")
    flat = [(v, i) for v, ix in voices.items() for i in ix if len(ix) > 1]
    from aimusic.text import phonemes as ph

    cfg = single_config(ph.VOCAB_SIZE, int(u.ds.manifest["codebook_size"]), args.max_len)
    torch.manual_seed(args.seed)
    model = TokenLM(cfg)
    vocab = cfg.layout
    tc = TRAIN_PRESETS["small"]()
    tc.minutes, tc.steps, tc.batch_size = args.minutes, 100_000, args.batch_size
    opt = make_optimizer(model, tc, torch.device("cpu"))
    gen = torch.Generator().manual_seed(args.seed)
    val = score_pairs(u, "val", args.max_len, per_voice=4)
    print(f"single stage: {model.num_parameters() / 1e6:.2f} M parameters, {len(flat)} "
          f"sentences of {len(voices)} voices, {len(val)} validation pairs", file=sys.stderr)
    step, planned, t0, log = 0, tc.steps, time.monotonic(), []
    positions = 0
    while step < planned:
        seqs = []
        while len(seqs) < tc.batch_size:
            v, b = flat[int(torch.randint(len(flat), (1,), generator=gen))]
            a = voices[v][int(torch.randint(len(voices[v]), (1,), generator=gen))]
            if a == b or not fits(u, a, b, args.max_len, args.prompt_text):
                continue
            ids, mask, _ = single_sequence(vocab, NO_PROMPT if not args.prompt else u.get(a),
                                           u.get(b), args.prompt_text)
            seqs.append((ids, mask))
        ids, mask = pad_batch(seqs)
        positions += int(mask.any(-1).sum())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc, planned)
        loss = next_token_loss(model(ids), ids, mask, model.stream_offsets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        elapsed = time.monotonic() - t0
        planned = plan_steps(tc, step, step, elapsed)
        if elapsed >= tc.minutes * 60:
            planned = step
        if step % 50 == 0 or step >= planned:
            entry = {"step": step, "planned": planned, "loss": round(float(loss.detach()), 4),
                     "seconds": round(elapsed, 1), "positions": positions}
            if step % 200 == 0 or step >= planned:
                model.eval()
                entry["val_bits_per_second"] = round(
                    score_single(model, u, val, args.prompt_text, args.prompt)["bits_per_second"], 1)
                model.train()
            log.append(entry)
            print(json.dumps(entry), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_lm(model, args.out, depends=u.ds.depends,
            extra={"steps": step, "minutes": args.minutes, "batch_size": tc.batch_size,
                   "layout": "delay stage, phonemes in the semantic range",
                   "prompt_text": args.prompt_text, "prompt": args.prompt, "seed": args.seed,
                   "history": log})
    return 0


def trained_with(path: Path | None, key: str) -> bool:
    """A single stage file's training flag (its ``extra``; absent: True): ``prompt_text``,
    whether it reads the prompt's phonemes; ``prompt``, whether it hears a prompt at all."""
    from aimusic.artifacts import read_metadata

    return bool(read_metadata(path).get("extra", {}).get(key, True)) if path else True


def score_pairs(u: Utterances, split: str, max_len: int, per_voice: int) -> list[tuple[int, int]]:
    """(prompt, target) pairs: each voice's sentences in order, a sentence the prompt of
    the next, both together within ``max_len`` steps of the single stage."""
    out = []
    for _, ix in sorted(u.by_voice(split).items()):
        got = 0
        for a, b in zip(ix[::2], ix[1::2]):
            if got < per_voice and fits(u, a, b, max_len):
                out.append((a, b))
                got += 1
    return out


@torch.no_grad()
def score_single(model: TokenLM, u: Utterances, pairs: list[tuple[int, int]],
                 prompt_text: bool = True, prompt: bool = True) -> dict:
    vocab = model.cfg.layout
    bits = seconds = 0.0
    for a, b in pairs:
        ids, mask = target_sequence(vocab, u.get(a) if prompt else NO_PROMPT, u.get(b),
                                    prompt_text)
        n = int(mask[1:].sum())
        bits += float(next_token_loss(model(ids[None]), ids[None], mask[None],
                                      model.stream_offsets)) * n / LN2
        seconds += u.ds.semantic_lengths[b] / u.rate
    return {"bits_per_second": bits / seconds, "seconds": seconds}


@torch.no_grad()
def score_split(reader: TokenLM, coarse: TokenLM, u: Utterances,
                pairs: list[tuple[int, int]]) -> dict:
    rv, cv = reader.cfg.layout, coarse.cfg.layout
    n = L.fit_window("coarse", cv, coarse.cfg.max_len, LEVELS, u.fpt)
    hop = max(1, n // 2)
    read_bits = coarse_bits = seconds = 0.0
    for a, b in pairs:
        _, sa, ca = u.get(a)
        pb, sb, cb = u.get(b)
        voice = sa[:reader.cfg.voice_tokens] if reader.cfg.voice_tokens else None
        ids, mask = VL.reading_sequence(rv, pb, sb, end=False, voice=voice)
        k = int(mask[1:].sum())
        read_bits += float(next_token_loss(reader(ids[None]), ids[None], mask[None])) * k / LN2
        sem, codes = torch.cat([sa, sb]), torch.cat([ca, cb], -1)
        for j in range(sa.numel(), sem.numel(), hop):
            end = min(sem.numel(), j + hop)
            start = max(0, end - n)
            ids, mask = L.coarse_sequence(cv, sem[start:end], codes[:, u.fpt * start:u.fpt * end],
                                          LEVELS)
            # only the frames of tokens j..end are scored; the rest is context
            mask[:end - start + 1 + LEVELS * u.fpt * (j - start)] = False
            k = int(mask[1:].sum())
            coarse_bits += float(next_token_loss(coarse(ids[None]), ids[None], mask[None])) * k / LN2
        seconds += sb.numel() / u.rate
    return {"bits_per_second": (read_bits + coarse_bits) / seconds,
            "reader_bits_per_second": read_bits / seconds,
            "coarse_bits_per_second": coarse_bits / seconds, "seconds": seconds}


@torch.no_grad()
def score_delay(stage: TokenLM, u: Utterances, pairs: list[tuple[int, int]]) -> dict:
    """Bits per second of b's levels 1-3 under an acoustic stage in the ``delay`` layout
    (semantic prefix, then every level of its token directory's codes delayed; train it on
    codes with levels 4 and up zeroed, ``gpu_pack_tokens.py``, so they tell nothing), over
    windows as ``score_split``'s coarse LM: the split's other acoustic layout."""
    v = stage.cfg.layout
    n = L.fit_window("delay", v, stage.cfg.max_len, LEVELS, u.fpt)
    hop = max(1, n // 2)
    bits = seconds = 0.0
    for a, b in pairs:
        sa, ca = u.ds.item(a)
        sb, cb = u.ds.item(b)
        ca, cb = ca[:, :u.fpt * sa.numel()].clone(), cb[:, :u.fpt * sb.numel()].clone()
        ca[LEVELS:], cb[LEVELS:] = 0, 0
        sem, codes = torch.cat([sa, sb]), torch.cat([ca, cb], -1)
        for j in range(sa.numel(), sem.numel(), hop):
            end = min(sem.numel(), j + hop)
            start = max(0, end - n)
            ids, mask = L.delay_sequence(v, sem[start:end], codes[:, u.fpt * start:u.fpt * end])
            mask = only_new_frames(mask, end - start + 1, u.fpt * (end - start),
                                   u.fpt * (j - start))
            k = int(mask[1:].sum())
            bits += float(next_token_loss(stage(ids[None]), ids[None], mask[None],
                                          stage.stream_offsets)) * k / LN2
        seconds += sb.numel() / u.rate
    return {"bits_per_second": bits / seconds, "seconds": seconds}


def score(args: argparse.Namespace) -> int:
    u = Utterances(args.tokens, args.corpus)
    singles = {f"single-{k}": load_lm(f, "delay") for k, f in enumerate(args.single)}
    texts = {k: trained_with(m.source_path, "prompt_text") for k, m in singles.items()}
    heard = {k: trained_with(m.source_path, "prompt") for k, m in singles.items()}
    reader = load_lm(args.split / "lm-reading.safetensors", "reading")
    coarse = load_lm(args.split / "lm-coarse.safetensors", "coarse")
    delay = load_lm(args.delay, "delay") if args.delay else None
    max_len = min(m.cfg.max_len for m in singles.values())
    out: dict = {"date": date.today().isoformat(), "command": " ".join(sys.argv),
                 "tokens": str(args.tokens), "max_len": max_len, "splits": {}}
    others = [("reader", reader), ("coarse", coarse)] + ([("delay", delay)] if delay else [])
    for name, f in (*singles.items(), *others):
        out[name] = {"file": str(f.source_path), "hash": f.source_hash,
                     "parameters": f.num_parameters()}
        if name in texts:
            out[name]["prompt_text"], out[name]["prompt"] = texts[name], heard[name]
    for split in args.splits:
        # the same pairs for every model: those that fit with the prompt's text
        pairs = score_pairs(u, split, max_len, args.per_voice)
        res: dict = {"pairs": len(pairs), "voices": len({u.voice(b) for _, b in pairs})}
        took = {}
        for name, m in singles.items():
            t0 = time.monotonic()
            res[name] = {k: round(v, 2) for k, v in
                         score_single(m, u, pairs, texts[name], heard[name]).items()}
            took[name] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        res["split"] = {k: round(v, 2) for k, v in score_split(reader, coarse, u, pairs).items()}
        took["split"] = round(time.monotonic() - t0, 1)
        if delay is not None:
            t0 = time.monotonic()
            d = score_delay(delay, u, pairs)
            r = res["split"]["reader_bits_per_second"]
            res["split-delay"] = {"bits_per_second": round(r + d["bits_per_second"], 2),
                                  "reader_bits_per_second": r,
                                  "delay_bits_per_second": round(d["bits_per_second"], 2)}
            took["split-delay"] = round(time.monotonic() - t0, 1)
        out["splits"][split] = {**res, "score_seconds": took}
        print(json.dumps({split: out["splits"][split]}), file=sys.stderr, flush=True)
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out, indent=2))
    return 0


@torch.no_grad()
def continue_codes(model: TokenLM, codes: torch.Tensor, voice_phonemes: list[int],
                   phonemes: list[int], frames: int, generator: torch.Generator) -> torch.Tensor:
    """The single stage's speech: ``frames`` new frames of codec levels 1-3 [LEVELS, frames]
    saying ``phonemes`` after the prompt's codes [>= LEVELS, F] and its transcript."""
    vocab, K = model.cfg.layout, LEVELS
    fa = codes.shape[1]
    phon = torch.tensor(voice_phonemes + phonemes, dtype=torch.long)
    if phon.numel() + 1 + fa + frames + K - 1 > model.cfg.max_len:
        raise ValueError(f"{phon.numel()} phonemes and {fa + frames} frames exceed the context")
    known = torch.cat([codes[:K], torch.zeros(K, frames, dtype=torch.long)], 1)
    ids, _ = L.delay_sequence(vocab, phon, known)
    head = phon.numel() + 1

    def allowed(i: int) -> list[tuple[int, int]]:
        out = []
        for k in range(K):
            f = i - head - k
            if 0 <= f < fa:
                out.append((int(ids[i, k]), int(ids[i, k]) + 1))  # the prompt's own code
            elif fa <= f < fa + frames:
                out.append(vocab.level_range(k))
            else:
                out.append((L.PAD, L.PAD + 1))
        return out

    start = head + fa
    seq = Decoder(model).generate(ids[None, :start], ids.shape[0] - start, generator=generator,
                                  allowed=allowed)
    both = vocab.acoustic_codes(L.undelay(seq[0, head:]))
    assert torch.equal(both[:, :fa], codes[:K]), "the prompt's codes were not kept"
    return both[:, fa:]


def speak_single(model: TokenLM, chain, voice: np.ndarray, voice_phonemes: list[int],
                 phonemes: list[int], seed: int, voice_match: int,
                 frames_per_phoneme: float) -> np.ndarray:
    """Say ``phonemes`` in the voice of the recording ``voice`` (whole, with its transcript
    ``voice_phonemes``, VALL-E's prompt, or none), as many frames as the voice's pace gives
    them (the single stage has no END; with no transcript, ``frames_per_phoneme``). Codec
    levels 1-3, decoded as `speak` decodes them."""
    from aimusic.gen.chain import encode_prompt
    from aimusic.gen.continuation import render
    from aimusic.voice.prompt import PromptVoice

    _, codes = encode_prompt(chain, voice, 10**6)
    pace = codes.shape[1] / len(voice_phonemes) if voice_phonemes else frames_per_phoneme
    fb = max(1, round(len(phonemes) * pace))
    new = continue_codes(model, codes, voice_phonemes, phonemes, fb,
                         torch.Generator().manual_seed(seed))
    audio = render(chain, codes, new, PromptVoice.of(chain, voice_match))
    return audio


def speak(args: argparse.Namespace) -> int:
    """`speak`'s test sentences (examples/voice_outputs.py's: each test voice's utterances
    of 3.5 s or more, said in the voice of the next one) by the single stage."""
    from aimusic.audio import load_audio, save_audio
    from aimusic.gen import load_chain
    from aimusic.text import phonemes as ph

    model = load_lm(args.single, "delay")
    with_text = trained_with(args.single, "prompt_text")
    chain = load_chain(args.models, "flat")
    entries = [json.loads(ln) for ln in (args.corpus / "manifest.jsonl").read_text().splitlines()]
    by: dict[str, list[dict]] = {}
    for e in entries:
        if e.get("split") == "test" and e.get("duration", 0) >= 3.5:
            by.setdefault(e["speaker"], []).append(e)
    fps = chain.sample_rate / chain.codec.cfg.hop
    train = [e for e in entries if e.get("split") == "train" and e.get("phonemes")]
    pace = (sum(e["duration"] for e in train) * fps /
            sum(len(ph.encode(ph.from_string(e["phonemes"]))) for e in train))
    args.out.mkdir(parents=True, exist_ok=True)
    listing, skipped, speed = [], [], []
    for speaker, utts in sorted(by.items()):
        utts = utts[:args.items + 1]
        for k, e in enumerate(utts[:args.items]):
            v = utts[(k + 1) % len(utts)]
            if not e.get("text") or not v.get("phonemes"):
                continue
            voice = load_audio(args.corpus / v["path"], chain.sample_rate)
            said = ph.encode(ph.phonemize([e["text"]])[0])
            heard = ph.encode(ph.from_string(v["phonemes"])) if with_text else []
            t0 = time.perf_counter()
            try:
                y = speak_single(model, chain, voice, heard, said, args.seed + k, args.voice_match,
                                 pace)
            except ValueError as err:
                skipped.append({"sentence": e["path"], "why": str(err)})
                continue
            wall = time.perf_counter() - t0
            name = f"single-{speaker}-{k:03d}.wav"
            save_audio(args.out / name, y, chain.sample_rate)
            speed.append({"seconds": y.size / chain.sample_rate, "wall": wall})
            listing.append({"path": name, "task": "speak", "speaker": speaker,
                            "prompt": v["path"], "text": e["text"]})
            print(f"{name}: {y.size / chain.sample_rate:.2f} s in {wall:.2f} s  {e['text']!r}",
                  file=sys.stderr, flush=True)
    (args.out / "outputs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in listing))
    write_json(args.out / "single.json",
               {"skipped": skipped, "speak": speed, "model": str(args.single)})
    print(f"{len(listing)} outputs ({len(skipped)} too long to fit) in {args.out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the single stage (VALL-E's inputs)")
    s = sub.add_parser("score", help="bits per second of both on held-out voices")
    for p in (t, s):
        p.add_argument("tokens", type=Path, help="token directory of the speech corpus's wav folder")
        p.add_argument("--corpus", type=Path, default=Path("data/speech"))
    t.add_argument("-o", "--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=24.0)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--max-len", type=int, default=800, help="steps per sequence (both sentences)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-prompt: the ablation with no prompt sentence (one sentence a "
                        "sequence, scored without the voice's other sentence)")
    t.add_argument("--prompt-text", action=argparse.BooleanOptionalAction, default=True,
                   help="read the prompt sentence's phonemes too (VALL-E's prompt); "
                        "--no-prompt-text: the new sentence's alone, as `speak --voice` needs")
    s.add_argument("--split", type=Path, required=True,
                   help="models folder with lm-reading and lm-coarse")
    s.add_argument("--single", type=Path, nargs="+", required=True,
                   help="the single stage's file(s)")
    s.add_argument("--delay", type=Path,
                   help="an acoustic stage in the delay layout (`train-lm --stage delay` on "
                        "tokens with levels 4+ zeroed): the split's reader with it, too")
    s.add_argument("--splits", nargs="+", default=["test", "val"])
    s.add_argument("--per-voice", type=int, default=25)
    s.add_argument("-o", "--out", type=Path)
    k = sub.add_parser("speak", help="the single stage says voice_outputs.py's test sentences")
    k.add_argument("--single", type=Path, required=True)
    k.add_argument("--models", type=Path, required=True, help="models folder with the codec")
    k.add_argument("--corpus", type=Path, default=Path("data/speech"))
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--items", type=int, default=10)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--voice-match", type=int, default=VOICE_MATCH)
    args = ap.parse_args()
    configure_threads()
    return {"train": train, "score": score, "speak": speak}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
