"""Continuing audio: ``aimusic continue`` and ``aimusic generate``, chunk by chunk.

A continuation is made in chunks of at most ``CHUNK_SECONDS`` (Magenta RealTime's way,
with longer chunks): each chunk is sampled by the chain (``chain.sample_tokens``) from a
context of the last semantic tokens and codes made (what the first LM's window keeps,
the prompt's own at first), decoded, and handed on at once. Nothing grows with the
length but the output file: the context, the stages' windows and the decoder's buffer are
bounded, so ``continue --seconds 600`` runs in the memory of a 20-second request and its
output (``continue_file``) plays while it is being written.

Tokens, not audio, carry a chunk into the next: the codes a chunk made are the next
chunk's context as they are, never re-encoded. Each chunk's stages start their KV caches
afresh from that context.

Decoding (``Renderer``). The codes are decoded as one sequence: each block is decoded
with the frames before it as context and is held back by the decoder's receptive field
(``codec.stream.context_frames``) until the frames after it exist, so the output equals
one decode of all the codes, with no seam between chunks. The first block starts with
the prompt's last frames: the output is the original audio up to the join and the
decoded continuation after it, with a 20 ms equal-power crossfade just before the join
from the original into the codec's rendering of the prompt (equal-power, not linear: a
codec at 6 kbps keeps the spectrum, not the phase, so the two are uncorrelated and a
linear fade would dip by 3 dB).

Lengths are exact: ``ceil(samples / semantic hop)`` semantic tokens are generated, three
frames each, and the decoded audio is cut to ``round(seconds * sample_rate)`` samples.
A request that fits in one chunk is made exactly as before chunks existed; a longer one
draws each later chunk's tokens from its own seed (``stage_seed(seed, "chunk i")``).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from aimusic.dsp import PromptEQ, equalize
from aimusic.errors import AimusicError
from aimusic.gen.chain import (
    MIN_PROMPT_SECONDS,
    Chain,
    decode_codes,
    encode_prompt,
    fresh_seed,
    sample_tokens,
    stage_seed,
)
from aimusic.gen.stages import Sampling
from aimusic.progress import Bars

XFADE_SECONDS = 0.02
CHUNK_SECONDS = 20.0


class Voice(Protocol):
    """What keeps a speaker's voice in a continuation of speech (``voice.prompt.PromptVoice``):
    the new frames matched to the prompt's, and an equalizer for the rendering."""

    def match(self, prompt_codes: torch.Tensor, new_codes: torch.Tensor) -> torch.Tensor: ...

    def equalizer(self, prompt: np.ndarray, prompt_codes: torch.Tensor) -> PromptEQ | None: ...


def crossfade(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal-power fade from a to b (same length): cos / sin gains, power kept constant."""
    n = a.size
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1) * (np.pi / 2)
    return (a * np.cos(t) + b * np.sin(t)).astype(np.float32)


class Renderer:
    """Codes in, audio out, block by block, equal to one decode of all the codes.

    ``codes`` [L, F] are the frames before the first new one (the prompt's); audio is
    handed out from sample ``start`` of their timeline on. ``push`` adds new frames and
    returns the samples that are now final: all but the decoder's right context, which
    waits for the next frames (all of them when ``last``). The buffer keeps only the
    frames the next decode needs. ``eq`` (``voice.prompt.codec_eq``'s) equalizes what is
    decoded."""

    def __init__(self, chain: Chain, codes: torch.Tensor, start: int, eq: PromptEQ | None = None) -> None:
        from aimusic.codec.stream import context_frames

        self.chain, self.eq = chain, eq
        self.hop, self.context = chain.codec.cfg.hop, context_frames(chain.codec)
        self.codes, self.first, self.pos = codes, 0, start  # first: frame of codes[:, 0]

    def push(self, new: torch.Tensor, last: bool = False) -> np.ndarray:
        hop = self.hop
        self.codes = torch.cat([self.codes, new.to(self.codes)], 1)
        end = self.first + self.codes.shape[1]
        ready = end * hop if last else (end - self.context) * hop
        if ready <= self.pos:
            return np.zeros(0, np.float32)
        keep = max(self.first, self.pos // hop - self.context)  # the left context it needs
        self.codes, self.first = self.codes[:, keep - self.first:], keep
        y = decode_codes(self.chain, self.codes)
        if self.eq is not None:
            y = equalize(y, self.eq)
        out = y[self.pos - keep * hop:ready - keep * hop]
        self.pos = ready
        return out


def render(chain: Chain, prompt_codes: torch.Tensor, new_codes: torch.Tensor,
           voice: Voice | None = None, prompt: np.ndarray | None = None) -> np.ndarray:
    """The audio of ``new_codes`` [L, F] decoded after ``prompt_codes`` (their first L
    levels: all, or the coarse ones without the fine stage), the prompt's frames as the
    decoder's context: ``F * hop`` samples. A ``voice`` (for speech) first matches the new
    frames to the prompt's and equalizes the audio as measured on the recorded ``prompt``."""
    pc = prompt_codes[:new_codes.shape[0]]
    eq = None if voice is None or prompt is None else voice.equalizer(prompt, pc)
    renderer = Renderer(chain, pc, pc.shape[1] * chain.codec.cfg.hop, eq)
    return renderer.push(new_codes if voice is None else voice.match(pc, new_codes), last=True)


class Continuation:
    """``audio`` (mono float32 at the codec's rate) continued by ``seconds``, made chunk by
    chunk: ``blocks()`` yields the output (the original first, unless
    ``continuation_only``), then ``result()`` says how it went.

    ``voice`` (for speech: ``voice.prompt.PromptVoice``) matches the new frames to the
    prompt's and equalizes them to undo how the codec colours the prompt; ``fine=False``
    decodes the coarse levels alone.
    ``chunk_seconds`` (None: all at once) bounds each chunk; ``report`` gets a line after
    each chunk of a request of several."""

    def __init__(self, chain: Chain, audio: np.ndarray, seconds: float, *,
                 prompt_seconds: float | None = None, continuation_only: bool = False,
                 sampling: dict[str, Sampling] | None = None, seed: int | None = None,
                 use_cache: bool = True, progress: bool = False, threads: bool | None = None,
                 name: str = "<prompt>", voice: Voice | None = None, fine: bool = True,
                 chunk_seconds: float | None = CHUNK_SECONDS,
                 report: Callable[[str], None] | None = None) -> None:
        self.t0 = time.perf_counter()
        self.chain, self.audio, self.seconds = chain, audio, seconds
        sr, hop = chain.sample_rate, chain.token_samples
        self.n_samples = n_samples(seconds, sr)
        limit = chain.max_prompt_tokens()
        if prompt_seconds is not None:
            if not prompt_seconds >= MIN_PROMPT_SECONDS:
                raise AimusicError(f"--prompt-seconds must be at least {MIN_PROMPT_SECONDS:g}")
            limit = min(limit, int(prompt_seconds * sr) // hop)
        self.limit = limit
        self.sem, self.codes = encode_prompt(chain, audio, limit, name)
        self.t_enc = time.perf_counter() - self.t0
        self.seed = fresh_seed(seed)
        self.sampling = sampling or chain.sampling()
        self.n_tokens = math.ceil(self.n_samples / hop)
        per = self.n_tokens if chunk_seconds is None else max(1, round(chunk_seconds * sr / hop))
        self.per_chunk = min(per, self.n_tokens)
        self.n_chunks = math.ceil(self.n_tokens / self.per_chunk)
        self.use_cache, self.threads, self.fine = use_cache, threads, fine
        self.progress, self.voice, self.report = progress, voice, report
        self.continuation_only = continuation_only
        self.stats: dict[str, dict[str, float]] = {}
        self.t_dec = 0.0
        self.samples = 0  # samples of output handed out

    def _levels(self) -> int:
        """Levels the stages make: all, or the coarse ones without the fine stage (skipped,
        or no fine LM in the chain)."""
        c = self.chain.coarse_lm
        if c is None or self.chain.runs_fine(self.fine):
            return int(self.chain.codec.cfg.levels)
        return int(self.chain.lms[c].cfg.coarse_levels)

    def blocks(self) -> Iterator[np.ndarray]:
        chain, audio, sr = self.chain, self.audio, self.chain.sample_rate
        fpt, hop = chain.frames_per_token, chain.codec.cfg.hop
        levels = self._levels()
        prompt_codes = self.codes[:levels]
        t = time.perf_counter()
        eq = None if self.voice is None else self.voice.equalizer(audio, prompt_codes)
        P = prompt_codes.shape[1]
        xfade = 0 if self.continuation_only else min(audio.size, int(XFADE_SECONDS * sr))
        lead = min(P * hop, xfade)  # samples of the prompt's rendering to fade into
        renderer = Renderer(chain, prompt_codes, P * hop - lead, eq)
        self.t_dec += time.perf_counter() - t
        if not self.continuation_only:
            head = audio[:audio.size - lead]
            self.samples += head.size
            yield head
        sem, codes = self.sem, self.codes
        want = lead + self.n_samples  # samples the renderer still has to give
        pending = np.zeros(0, np.float32)  # its first samples, until the fade has them all
        for i in range(self.n_chunks):
            n = min(self.per_chunk, self.n_tokens - i * self.per_chunk)
            seed = self.seed if i == 0 else stage_seed(self.seed, f"chunk {i}") % 2**31
            label = f"{i + 1}/{self.n_chunks} " if self.n_chunks > 1 else ""
            new_sem, new_codes, stats = sample_tokens(
                chain, sem, codes, n, self.sampling, seed, self.use_cache,
                Bars(self.progress, label=label, unit="tokens"), self.threads, fine=self.fine)
            self._add_stats(stats)
            t = time.perf_counter()
            out = new_codes if self.voice is None else self.voice.match(prompt_codes, new_codes)
            y = renderer.push(out, last=i == self.n_chunks - 1)[:want]
            want -= y.size
            if lead:  # the first samples are the prompt's rendering: fade into them
                pending = np.concatenate([pending, y])
                y = np.zeros(0, np.float32)
                if pending.size >= lead or i == self.n_chunks - 1:
                    k = min(lead, pending.size)
                    y = np.concatenate([audio[audio.size - lead:audio.size - k],
                                        crossfade(audio[audio.size - k:], pending[:k]), pending[k:]])
                    lead = 0
            self.t_dec += time.perf_counter() - t
            # the next chunk's context: the last tokens made (the acoustic layout makes no
            # semantic tokens and reads none: placeholders keep the lengths in step)
            if new_sem.numel() != n:
                new_sem = torch.zeros(n, dtype=torch.long)
            if new_codes.shape[0] < codes.shape[0]:  # no fine stage: its levels are never read
                new_codes = torch.cat([new_codes, codes.new_zeros(
                    codes.shape[0] - new_codes.shape[0], new_codes.shape[1])])
            sem = torch.cat([sem, new_sem.to(sem)])[-self.limit:]
            codes = torch.cat([codes, new_codes.to(codes)], 1)[:, -fpt * sem.numel():]
            self.samples += y.size
            yield y
            if self.report is not None and self.n_chunks > 1:
                self.report(self._progress_line(i + 1))

    def _add_stats(self, stats: dict[str, dict[str, float]]) -> None:
        for s, v in stats.items():
            acc = self.stats.setdefault(s, {"seconds": 0.0, "tokens": 0, "waited": 0.0})
            for k in acc:
                acc[k] += v.get(k, 0)

    def _progress_line(self, done: int) -> str:
        made = min(self.seconds, done * self.per_chunk * self.chain.token_samples / self.chain.sample_rate)
        spent = time.perf_counter() - self.t0
        rate = made / spent
        rest = (self.seconds - made) / rate if rate > 0 else float("nan")
        return (f"chunk {done}/{self.n_chunks}: {made:,.0f} s of {self.seconds:,.0f} s made, "
                f"{rate:.2f}x real time, about {format_duration(rest)} left")

    def result(self) -> dict[str, Any]:
        total = time.perf_counter() - self.t0
        hop, sr = self.chain.token_samples, self.chain.sample_rate
        return {"sample_rate": sr, "seed": self.seed, "seconds": self.seconds,
                "stages": self.stats, "encode": self.t_enc, "decode": self.t_dec,
                "total": total, "x_realtime": self.seconds / total, "chunks": self.n_chunks,
                "output_seconds": self.samples / sr,
                "prompt_seconds": self.sem.shape[0] * hop / sr}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "? s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def continue_audio(chain: Chain, audio: np.ndarray, seconds: float, **kw: Any) -> dict[str, Any]:
    """``Continuation``'s output in memory: ``audio`` (the original with the continuation
    joined, or the continuation alone), ``sample_rate``, ``seed``, and timings: ``stages``
    (seconds and tokens), ``encode``, ``decode``, ``total`` seconds and ``x_realtime``
    (generated seconds per second of wall time). Made in one chunk unless
    ``chunk_seconds`` is given."""
    kw.setdefault("chunk_seconds", None)
    c = Continuation(chain, audio, seconds, **kw)
    blocks = list(c.blocks())
    return {"audio": np.concatenate(blocks) if blocks else np.zeros(0, np.float32), **c.result()}


def check_room(out: str | Path, n: int) -> None:
    """Refuse, naming ``out``, an output of ``n`` 16-bit samples that its format or its
    disk cannot hold (FLAC is taken at half of that)."""
    from aimusic.audio import WAV_MAX_BYTES

    if str(out) == "-":
        return
    p = Path(out)
    need = 2 * n
    if p.suffix.lower() == ".wav" and need > WAV_MAX_BYTES:
        raise AimusicError(f"{p}: a WAV file holds at most 4 GiB ({WAV_MAX_BYTES // 2:,} samples); "
                           f"this one needs {need / 2**30:.1f} GiB: write .flac instead")
    if p.suffix.lower() in (".flac", ".ogg", ".oga", ".opus", ".mp3"):
        need //= 2
    free = shutil.disk_usage(p.parent if str(p.parent) else ".").free
    if need > free:
        raise AimusicError(f"{p}: needs about {need / 2**20:,.0f} MiB and its disk has "
                           f"{free / 2**20:,.0f} MiB free")


def continue_file(chain: Chain, path: str | Path, out: str | Path, seconds: float,
                  **kw: Any) -> dict[str, Any]:
    """Read ``path``, continue it chunk by chunk (``Continuation``'s options) and write each
    chunk to ``out`` as it is made (``audio.AudioStreamWriter``: a WAV plays while it is
    written; ``"-"``: standard output). Returns ``Continuation.result()`` with ``out`` and
    ``input_seconds``."""
    from aimusic.audio import AudioStreamWriter, load_audio

    audio = load_audio(path, chain.sample_rate)
    c = Continuation(chain, audio, seconds, name=str(path), **kw)
    check_room(out, c.n_samples + (0 if c.continuation_only else audio.size))
    if c.report is not None and c.n_chunks > 1:
        c.report(f"{path}: {seconds:,.0f} s to make in {c.n_chunks} chunks of "
                 f"{c.per_chunk * chain.token_samples / chain.sample_rate:.0f} s; the time "
                 "left is estimated after each")
    with AudioStreamWriter(out, chain.sample_rate) as w:
        for block in c.blocks():
            w.write(block)
    return {**c.result(), "out": out if str(out) == "-" else Path(out),
            "input_seconds": audio.size / chain.sample_rate}


def generate_audio(chain: Chain, seconds: float, *, sampling: dict[str, Sampling] | None = None,
                   seed: int | None = None, use_cache: bool = True, progress: bool = False,
                   threads: bool | None = None, label: str = "") -> dict[str, Any]:
    """An unconditional sample of ``seconds``; returns what ``continue_audio`` returns."""
    t0 = time.perf_counter()
    sr = chain.sample_rate
    n = n_samples(seconds, sr)
    seed = fresh_seed(seed)
    K = chain.codec.cfg.levels
    _, codes, stats = sample_tokens(chain, torch.zeros(0, dtype=torch.long),
                                    torch.zeros(K, 0, dtype=torch.long),
                                    math.ceil(n / chain.token_samples),
                                    sampling or chain.sampling(), seed, use_cache,
                                    Bars(progress, label=label, unit="tokens"), threads)
    t1 = time.perf_counter()
    out = decode_codes(chain, codes)[:n]
    t_dec = time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {"audio": out, "sample_rate": sr, "seed": seed, "seconds": seconds, "stages": stats,
            "encode": 0.0, "decode": t_dec, "total": total, "x_realtime": seconds / total,
            "output_seconds": out.size / sr}


def n_samples(seconds: float, sr: int) -> int:
    """``seconds`` at ``sr``, refused unless a positive finite number."""
    if not math.isfinite(seconds) or int(round(seconds * sr)) < 1:
        raise AimusicError(f"--seconds must be a positive number of seconds, got {seconds:g}")
    return int(round(seconds * sr))


def format_timings(r: dict[str, Any]) -> str:
    """One line: seconds and tokens per stage, the total and x real time."""
    parts = [f"encode {r['encode']:.2f} s"] if r.get("encode") else []
    for s, v in r["stages"].items():
        waited = f", {v['waited']:.2f} s waiting" if v.get("waited", 0) >= 0.01 else ""
        parts.append(f"{s} {v['seconds']:.2f} s ({v['tokens']:,} tokens{waited})")
    parts.append(f"decode {r['decode']:.2f} s")
    return (", ".join(parts) + f"; total {r['total']:.2f} s for {r['seconds']:g} s "
            f"({r['x_realtime']:.2f}x real time)")
