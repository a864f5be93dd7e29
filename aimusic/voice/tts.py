"""Text to speech, SPEAR-TTS's split: a *reading* LM turns phonemes into semantic tokens,
and the acoustic stages of ``continue`` (coarse, fine, codec decoder) render those tokens in
the voice of a prompt.

Why this split and not VALL-E's (phonemes and prompt codes straight to codes): the reading
LM is the only new model, and learns from the transcribed utterances alone, while the
acoustic LMs that carry the voice are the ones speech continuation trains on
untranscribed audio (the asterisk recordings with no English text included). Measured,
the split is not better: at the same CPU budget a single stage in the delay layout models
the test voices' speech in fewer bits and speaks twice as fast, and the voice judges hear
no difference (``research/tts_split_compare.py``, BENCHMARKS.md); the split stays until
both are compared at a GPU budget. Our
semantic tokens say who speaks as well as what is said
(``research/token_speaker_probe.py``), so the reader hears the voice first: 3 s of its
semantic tokens (``LMConfig.voice_tokens``; 0 for the first readers). One flat sequence
per sentence (layout ``reading`` in ``aimusic.lm.layouts``)::

    BOS v0 .. v(P-1) SEP p0 p1 .. p(M-1) SEP s0 s1 .. s(N-1) END

The model is the stage LM of every other stage (``aimusic.lm.model.TokenLM``), trained on
the transcribed items of a token directory made from a speech corpus (``aimusic tokenize``
on its wav folder): each item's semantic tokens, paired with the phonemes its
``manifest.jsonl`` entry lists. Speaking: phonemize the text, sample semantic tokens until
END, then the coarse and fine LMs continue the voice prompt's tokens with those semantic
tokens, and the codec decodes the new frames.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.artifacts import load_state, save_state, state_path
from aimusic.errors import AimusicError
from aimusic.lm import layouts as L
from aimusic.lm import loop
from aimusic.lm.baselines import BaselineScore, fit
from aimusic.lm.loop import LMTrainConfig, Run
from aimusic.lm.model import LMConfig, TokenLM, next_token_loss, save_lm
from aimusic.lm.train import split_items
from aimusic.tokens.reader import TokenDataset
from aimusic.voice import layout as VL

log = logging.getLogger("aimusic")

READING_FILE = "lm-reading.safetensors"
MIN_VOICE_SECONDS = 1.0
# a reader trained now hears 3 s of the voice first (25 semantic tokens/s): our semantic
# tokens carry the voice (research/token_speaker_probe.py)
VOICE_TOKENS = 75
VOICE_MATCH = 4  # `speak` re-expresses its frames in the voice's 4 nearest (match_voice)
# `speak` decodes the coarse levels alone (--fine runs the fine stage): with the bundled
# voice models the judges measure no difference, and it takes half the time (BENCHMARKS.md)
SPEAK_FINE = False
# `speak` equalizes what it says to undo how the codec colours the voice (voice.prompt.codec_eq)
PROMPT_EQ = True
# `speak`'s default voice: flite's rms (a test voice of the speech corpus, never trained on)
EXAMPLE_VOICE = Path(__file__).resolve().parents[1] / "bundled" / "examples" / "voice-rms.flac"


@dataclass
class Reading:
    """One transcribed utterance: phoneme ids (``aimusic.text.phonemes``) and its semantic
    tokens."""

    source: str
    phonemes: torch.Tensor  # [M]
    semantic: torch.Tensor  # [N]

    @property
    def voice(self) -> str:
        """Who speaks: the folder the utterance is in."""
        return Path(self.source).parent.name

    def length(self, voice_tokens: int = 0) -> int:
        """Its sequence's length, with a voice prefix of ``voice_tokens`` (and its SEP)."""
        return self.phonemes.numel() + self.semantic.numel() + 3 + \
            (voice_tokens + 1 if voice_tokens else 0)


# -- data ------------------------------------------------------------------------------


def _suffixes(path: str) -> list[str]:
    parts = Path(path).as_posix().split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def transcripts_for(sources: list[str], entries: list[dict]) -> list[list[int] | None]:
    """Phoneme ids of each token source, from speech-corpus manifest entries (``path``,
    ``phonemes``). A source matches the entry whose path ends with it (token directories
    store paths relative to the folder that was tokenized); None where no entry, or more
    than one, matches, or the entry has no phonemes."""
    from aimusic.text import phonemes as ph

    index: dict[str, int | None] = {}
    for k, e in enumerate(entries):
        for suf in _suffixes(e["path"]):
            index[suf] = None if suf in index and index[suf] != k else k
    out: list[list[int] | None] = []
    for src in sources:
        hit = index.get(Path(src).as_posix())
        text = entries[hit].get("phonemes") if hit is not None else None
        out.append(ph.encode(ph.from_string(text)) if text else None)
    return out


def load_readings(tokens_dir: str | Path, corpus: str | Path, max_len: int,
                  voice_tokens: int = 0) -> tuple[TokenDataset, list[Reading], dict[str, int]]:
    """The transcribed items of a token directory that fit ``max_len`` (after a voice
    prefix of ``voice_tokens``), and counts of the items left out (no transcript, too
    long)."""
    from aimusic.voice.evaluate import read_corpus

    ds = TokenDataset(tokens_dir)
    entries, _ = read_corpus(Path(corpus))
    found = transcripts_for(ds.sources, entries)
    readings, skipped = [], {"no_transcript": 0, "too_long": 0}
    for i, ids in enumerate(found):
        if not ids:
            skipped["no_transcript"] += 1
            continue
        sem, _ = ds.item(i)
        r = Reading(ds.sources[i], torch.tensor(ids), sem)
        if r.length(voice_tokens) > max_len:
            skipped["too_long"] += 1
            continue
        readings.append(r)
    if not readings:
        raise AimusicError(f"{tokens_dir}: none of its {len(ds)} items has a transcript in "
                           f"{Path(corpus) / 'manifest.jsonl'} that fits {max_len} tokens; "
                           "tokenize the corpus's wav folder")
    return ds, readings, skipped


def reading_batch(vocab: L.Vocab, readings: list[Reading],
                  voices: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences laid out (``reading_sequence``, each after its voice prefix when
    ``voices`` are given) and right-padded with PAD: ids, mask [B, T] (padding is never a
    target)."""
    vs: list[torch.Tensor | None] = list(voices) if voices is not None else [None] * len(readings)
    seqs = [VL.reading_sequence(vocab, r.phonemes, r.semantic, voice=v)
            for r, v in zip(readings, vs)]
    T = max(ids.numel() for ids, _ in seqs)
    ids = torch.full((len(seqs), T), L.PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for b, (i, m) in enumerate(seqs):
        ids[b, :i.numel()], mask[b, :m.numel()] = i, m
    return ids, mask


def baselines(train: list[Reading], val: list[Reading], clusters: int) -> dict[str, float]:
    """Text-free baselines of the reading targets (semantic tokens, then END as token
    ``clusters``): unigram and bigram cross entropy on ``val``, fitted on ``train``."""
    def stream(r: Reading) -> np.ndarray:
        return np.concatenate([r.semantic.numpy(), [clusters]])

    counts = fit((stream(r) for r in train), clusters + 1)
    score = BaselineScore()
    for r in val:
        score.add(counts, stream(r))
    return score.result()


class VoicePool:
    """Voice prefixes for a reader that hears the voice (``LMConfig.voice_tokens`` > 0):
    for a sentence, ``tokens`` semantic tokens of *another* sentence in the same voice,
    so the reader learns to take the voice from the prefix and the words from the
    phonemes. Training draws the other sentence and the stretch at random, and leaves the
    prefix empty for ``empty`` of the sentences (a reader with no voice to hear still
    reads) and shorter, 1 to ``tokens``, for ``short`` of them (a voice heard for less
    than 3 s); validation takes the next sentence of the voice, from its start. A voice
    with one sentence gets an empty prefix."""

    def __init__(self, readings: list[Reading], tokens: int, empty: float = 0.1,
                 short: float = 0.2) -> None:
        self.readings, self.tokens, self.empty, self.short = readings, tokens, empty, short
        by_voice: dict[str, list[int]] = {}
        for i, r in enumerate(readings):
            by_voice.setdefault(r.voice, []).append(i)
        self.others = {i: ix for ix in by_voice.values() for i in ix}

    def _other(self, i: int, pick: int) -> torch.Tensor | None:
        ix = [j for j in self.others[i] if j != i]
        return self.readings[ix[pick % len(ix)]].semantic if ix else None

    def drawn(self, idx: list[int], gen: torch.Generator) -> list[torch.Tensor]:
        out = []
        for i in idx:
            u, v = torch.rand(2, generator=gen).tolist()
            pick, at, short = torch.randint(1 << 30, (3,), generator=gen).tolist()
            sem = self._other(i, pick)
            if sem is None or u < self.empty:
                out.append(torch.zeros(0, dtype=torch.long))
                continue
            n = self.tokens if v >= self.short else 1 + short % self.tokens
            start = at % max(1, sem.numel() - n + 1)
            out.append(sem[start:start + n])
        return out

    def fixed(self, idx: list[int]) -> list[torch.Tensor]:
        out = []
        for i in idx:
            sem = self._other(i, self.others[i].index(i))  # the voice's next sentence
            out.append(torch.zeros(0, dtype=torch.long) if sem is None else sem[:self.tokens])
        return out


@torch.no_grad()
def reading_ce(model: TokenLM, vocab: L.Vocab, readings: list[Reading], device: torch.device,
               batch_size: int = 16) -> float:
    """Mean cross entropy (nats per target token) of the readings' semantic tokens and END
    (after ``VoicePool.fixed`` voice prefixes, for a reader that hears the voice)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    pool = VoicePool(readings, model.cfg.voice_tokens) if model.cfg.voice_tokens else None
    for k in range(0, len(readings), batch_size):
        span = list(range(k, min(len(readings), k + batch_size)))
        ids, mask = reading_batch(vocab, [readings[i] for i in span],
                                  pool.fixed(span) if pool is not None else None)
        ids, mask = ids.to(device), mask.to(device)
        n = int(mask[:, 1:].sum())
        total += float(next_token_loss(model(ids), ids, mask)) * n
        count += n
    model.train(was)
    return total / max(1, count)


# -- training --------------------------------------------------------------------------


class ReadingBatches:
    """The reader's training batches for the loop: random whole sentences, each after a
    prefix of its voice (another sentence by the same voice, ``VoicePool``)."""

    def __init__(self, vocab: L.Vocab, train: list[Reading], voice_tokens: int,
                 batch_size: int, seed: int) -> None:
        self.vocab, self.train, self.batch_size = vocab, train, batch_size
        self.pool = VoicePool(train, voice_tokens) if voice_tokens else None
        self.gen = torch.Generator().manual_seed(seed)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        idx = torch.randint(len(self.train), (self.batch_size,), generator=self.gen).tolist()
        ids, mask = reading_batch(self.vocab, [self.train[i] for i in idx],
                                  self.pool.drawn(idx, self.gen) if self.pool is not None else None)
        return ids, mask, int(mask.sum())

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)


def fit_reading(model: TokenLM, train: list[Reading], val: list[Reading], cfg: LMTrainConfig,
                device: torch.device, state_file: Path | None = None, resume: bool = False,
                on_val: Any = None, show_progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``train`` with the shared loop (``lm.loop.fit``), measuring
    ``val`` every ``val_every`` steps; the training state goes to ``state_file`` at each
    measurement (``resume`` continues from it). ``on_val(model, metrics)`` is called after
    each measurement. Returns the last metrics and the history."""
    model.to(device)
    opt = loop.make_optimizer(model, cfg, device)
    batches = ReadingBatches(model.cfg.layout, train, model.cfg.voice_tokens, cfg.batch_size,
                             cfg.seed)
    run = Run()
    if resume and state_file is not None:
        run = loop.restore(load_state(state_file), model, opt, batches, cfg, device)

    def validate(step: int) -> dict[str, Any]:
        return {"step": step, "val_ce": reading_ce(model, model.cfg.layout, val, device)}

    def checkpoint(run: Run) -> None:
        if on_val is not None:
            on_val(model, run.history[-1])
        if state_file is not None:
            save_state(state_file, loop.snapshot(model, opt, batches, run, device))

    loop.fit(model, opt, batches, cfg, device, run, name="reading", validate=validate,
        checkpoint=checkpoint, show_progress=show_progress)
    return {**run.history[-1], "history": run.history}


def reading_config(model_cfg: LMConfig, ds: TokenDataset, voice_tokens: int) -> LMConfig:
    """``model_cfg`` as the reading stage of ``ds``'s tokens (its vocabulary), with the
    phoneme inventory and a voice prefix of ``voice_tokens``."""
    from aimusic.text import phonemes as ph

    m = ds.manifest
    cfg = dataclasses.replace(model_cfg, stage="reading", clusters=int(m["clusters"]),
                              levels=int(m["levels"]), codebook_size=int(m["codebook_size"]),
                              phonemes=ph.VOCAB_SIZE, voice_tokens=voice_tokens)
    cfg.check()
    return cfg


def train_reading(tokens_dir: str | Path, corpus: str | Path, out: str | Path,
                  model_cfg: LMConfig, train_cfg: LMTrainConfig, device: torch.device,
                  resume: bool = False, show_progress: bool = True,
                  voice_tokens: int = VOICE_TOKENS) -> dict[str, Any]:
    """Train the reading LM on the transcribed items of ``tokens_dir`` (phonemes from
    ``corpus``'s manifest.jsonl), hearing ``voice_tokens`` semantic tokens of the voice
    before each sentence (0: none); writes ``out`` and ``out``'s training state beside
    it."""
    from aimusic.text import phonemes as ph

    ds, readings, skipped = load_readings(tokens_dir, corpus, model_cfg.max_len, voice_tokens)
    cfg = reading_config(model_cfg, ds, voice_tokens)
    torch.manual_seed(train_cfg.seed)
    model = TokenLM(cfg)
    tr, va = split_items([r.source for r in readings])
    train, val = [readings[i] for i in tr], [readings[i] for i in va]
    if not val:
        val = train[:1]
    base = baselines(train, val, cfg.clusters)
    log.info("reading LM: %d sentences to train on, %d to validate (%s skipped)", len(train),
             len(val), ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"tokens": str(tokens_dir), "corpus": str(corpus), "train_sentences": len(train),
            "val_sentences": len(val), **skipped}

    def save(mdl: TokenLM, metrics: dict[str, Any]) -> None:
        save_lm(mdl, out, depends=ds.depends,
                extra={"steps": metrics["step"], "val_ce": metrics["val_ce"], **base,
                       "data": data, "inventory_version": ph.INVENTORY_VERSION})

    r = fit_reading(model, train, val, train_cfg, device, state_path(out), resume,
                    save, show_progress)
    return {**r, **base, "out": out, **data}


# -- speaking --------------------------------------------------------------------------


@torch.no_grad()
def read_text(lm: TokenLM, phonemes: list[int], temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None,
              generator: torch.Generator | None = None,
              voice: torch.Tensor | None = None) -> torch.Tensor:
    """Phoneme ids [M] -> semantic tokens [N], sampled until END or the context is full.
    ``voice``: the voice's semantic tokens, of which a reader that hears the voice
    (``voice_tokens`` > 0) reads the last ``voice_tokens``; others ignore it."""
    vocab = lm.cfg.layout
    P = lm.cfg.voice_tokens
    prefix = None
    if P:
        prefix = voice.reshape(-1)[-P:].long().cpu() if voice is not None else \
            torch.zeros(0, dtype=torch.long)
    ids, _ = VL.reading_sequence(vocab, phonemes, [], end=False, voice=prefix)
    if ids.numel() >= lm.cfg.max_len:
        raise AimusicError(f"the text is {len(phonemes)} phonemes long; the reading LM reads "
                           f"at most {lm.cfg.max_len - 1 - ids.numel() + len(phonemes)} at once: split it "
                           "into sentences")
    from aimusic.gen.decode import Decoder

    device = next(lm.parameters()).device
    n_voice = None if prefix is None else prefix.numel()
    span = VL.allowed_reading(vocab, len(phonemes), n_voice)(ids.numel())  # semantic ids or END
    seq = Decoder(lm).generate(ids[None].to(device), lm.cfg.max_len - ids.numel(),
                               temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=generator, allowed=lambda i: span, stop=vocab.end_id)
    out = seq[0, ids.numel():].cpu()
    if out.numel() and int(out[-1]) == vocab.end_id:
        out = out[:-1]
    return vocab.semantic_tokens(out)


def check_reader(chain: Any, lm: TokenLM) -> None:
    """The reading LM must have learnt the semantic tokens of the chain's semantic model
    (the only model it depends on: it never sees acoustic tokens)."""
    if lm.depends.get("semantic") != chain.semantic.source_hash:
        raise AimusicError(f"{lm.source_path}: the reading LM was trained on tokens of the "
                           f"semantic model {lm.depends.get('semantic')}, not the one in use "
                           f"({chain.semantic.source_hash})")


def speak_text(chain: Any, lm: TokenLM, text: str, voice: np.ndarray | None = None, *,
               voice_name: str = "<voice>", sampling: dict[str, Any] | None = None,
               seed: int | None = None,
               progress: bool = False, voice_match: int = VOICE_MATCH,
               fine: bool = SPEAK_FINE, eq: bool = PROMPT_EQ) -> dict[str, Any]:
    """Say ``text`` in the voice of ``voice`` (mono float32 at the codec's rate; None: the
    acoustic LMs choose a voice); ``voice_match`` > 0 re-expresses the new frames in the
    voice's own (``voice.prompt.match_voice``); ``eq`` equalizes the speech to undo how the
    codec colours the voice (``voice.prompt.codec_eq``); ``fine=False`` skips the fine stage and decodes
    the coarse levels alone. ``sampling`` is ``chain.sampling(...)``'s: its
    ``semantic`` entry is the reading LM's (which writes the semantic tokens in place of the
    semantic LM). Returns what ``continue_audio`` returns, with
    the ``phonemes`` and the number of semantic tokens read."""
    from aimusic.gen.chain import (
        encode_prompt,
        fresh_seed,
        render_semantic,
        stage_seed,
    )
    from aimusic.gen.continuation import render
    from aimusic.progress import Bars
    from aimusic.text import phonemes as ph
    from aimusic.voice.prompt import PromptVoice

    if chain.layout != "flat":
        raise AimusicError(f"speak renders with the coarse and fine LMs (flat layout), not "
                           f"the {chain.layout} layout")
    check_reader(chain, lm)
    t0 = time.perf_counter()
    phones = ph.phonemize([text])[0]
    if not [p for p in phones if p not in (ph.WORD, ph.CLAUSE)]:
        raise AimusicError(f"nothing to say in {text!r}")
    seed = fresh_seed(seed)
    sr, hop, K = chain.sample_rate, chain.token_samples, chain.codec.cfg.levels
    if voice is not None:
        sem, codes = encode_prompt(chain, voice, chain.max_prompt_tokens(), voice_name,
                                   min_seconds=MIN_VOICE_SECONDS)
    else:
        sem, codes = torch.zeros(0, dtype=torch.long), torch.zeros(K, 0, dtype=torch.long)
    t_enc = time.perf_counter() - t0
    sampling = sampling or chain.sampling()
    rs = sampling["semantic"]
    gen = torch.Generator().manual_seed(stage_seed(seed, "reading"))
    t1 = time.perf_counter()
    read = read_text(lm, ph.encode(phones), rs.temperature, rs.top_k, rs.top_p, generator=gen,
                     voice=sem)
    t_read = time.perf_counter() - t1
    if read.numel() == 0:
        raise AimusicError(f"the reading LM ended {text!r} before saying anything; "
                           "try another --seed")
    new_codes, stats = render_semantic(chain, sem, codes, read, sampling, seed,
                                       progress=Bars(progress, unit="tokens"), fine=fine)
    t2 = time.perf_counter()
    # no voice: no prompt frames, nothing to match or equalize to
    audio = render(chain, codes, new_codes, PromptVoice.of(chain, voice_match, eq), voice)
    seconds = read.numel() * hop / sr
    audio = audio[:int(round(seconds * sr))]
    t_dec = time.perf_counter() - t2
    total = time.perf_counter() - t0
    stats = {"reading": {"seconds": t_read, "tokens": int(read.numel()), "waited": 0.0}, **stats}
    return {"audio": audio, "sample_rate": sr, "seed": seed, "seconds": seconds,
            "stages": stats, "encode": t_enc, "decode": t_dec, "total": total,
            "x_realtime": seconds / total, "phonemes": ph.to_string(phones),
            "voice_seconds": sem.numel() * hop / sr}
