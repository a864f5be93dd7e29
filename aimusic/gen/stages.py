"""The generation stages on token tensors, their windows, and running them side by side.

Each stage reads the previous stage's output as a ``Stream`` (a tensor that grows, with a
condition to wait on) and writes its own to one, chunk by chunk: with two or more cores
the stages run in threads, the coarse LM starting as soon as the semantic LM has made the
tokens of its first window and the fine LM as soon as the coarse frames of its first
group of windows are there. Every stage draws from its own generator and the chunks and
groups do not depend on timing, so the tokens are the same run in threads or in turn.

Windows. An LM was trained on windows of a fixed size (``window``, in semantic tokens, or
frames for fine). ``plan_chunks`` cuts a long request into windows that each re-prompt
with the most recent ``history(window)`` (half the window) known units and generate the
rest; the whole window's semantic tokens are known to the coarse and delay stages, its
known frames are their prompt (the acoustic stage, AudioLM's acoustic-only ablation, is
the coarse stage with no semantic tokens: its known frames are all it sees). The fine
stage fills independent windows of new frames (AudioLM's non-overlapping fine chunks),
``FINE_GROUP`` windows per batched call; the windows have one length, the last one moved
back to end at the last frame (its overlap with the one before is dropped).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aimusic.gen.decode import Decoder
from aimusic.lm import layouts as L

# fine windows per batched call (the batch shares each step's weight reads). Calls that
# grow 1, 2, 3, 4 start the fine stage sooner, but the two stages then share the two cores
# for longer and `speak` measured slower (0.78-0.95x real time against 0.88-1.04x).
FINE_GROUP = 4

Tick = Callable[[int], None]


def _no_tick(k: int) -> None:
    pass


@dataclass(frozen=True)
class Sampling:
    """How one stage draws its tokens: temperature (0 is greedy), top-k (None: off),
    top-p (None: off)."""

    temperature: float = 1.0
    top_k: int | None = 250  # MusicGen's
    top_p: float | None = None


# -- windows (pure) --------------------------------------------------------------------


def history(window: int) -> int:
    """Units a re-prompt keeps: half the window (the other half is generated)."""
    return max(1, window // 2)


def plan_chunks(known: int, total: int, window: int, keep: int) -> list[tuple[int, int, int]]:
    """Windows ``(start, known, end)`` that take a sequence from ``known`` to ``total`` units:
    [start, known) is the prompt (at most ``keep`` units), [known, end) is generated."""
    if not 0 < keep < window:
        raise ValueError(f"keep {keep} must be in 1..{window - 1}")
    out = []
    while known < total:
        start = max(0, known - keep)
        end = min(total, start + window)
        out.append((start, known, end))
        known = end
    return out


def fine_windows(first: int, total: int, window: int) -> tuple[int, list[int]]:
    """Length and starts of equal windows covering frames [first, total): as few as fit
    ``window``, the last one moved back to end at ``total`` (its overlap is dropped)."""
    n = total - first
    if n <= 0:
        return 0, []
    count = math.ceil(n / window)
    length = math.ceil(n / count)
    return length, [first + min(j * length, n - length) for j in range(count)]


# -- streams between stages ------------------------------------------------------------


class StageFailed(RuntimeError):
    """An earlier stage stopped; the runner reports that stage's own error."""


class Stream:
    """A tensor [..., T] that one stage extends along T and the next reads as it grows."""

    def __init__(self, data: torch.Tensor, closed: bool = False) -> None:
        self.data = data
        self.waited = 0.0  # seconds the reader spent waiting
        self._cond = threading.Condition()
        self._closed = closed
        self._error: BaseException | None = None

    def extend(self, more: torch.Tensor) -> None:
        with self._cond:
            self.data = torch.cat([self.data, more.cpu()], -1)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._closed, self._error = True, error
            self._cond.notify_all()

    def wait(self, n: int) -> torch.Tensor:
        """The data once it has at least n steps."""
        t0 = time.perf_counter()
        with self._cond:
            while self.data.shape[-1] < n and not self._closed:
                self._cond.wait()
            self.waited += time.perf_counter() - t0
            if self.data.shape[-1] < n:
                raise StageFailed(f"the stage before stopped at {self.data.shape[-1]} of {n}") \
                    from self._error
            return self.data


def _source(x: torch.Tensor | Stream) -> Stream:
    return x if isinstance(x, Stream) else Stream(x, closed=True)


# -- the stages ------------------------------------------------------------------------


def _extend(dec: Decoder, prompt: torch.Tensor, n: int, s: Sampling,
            generator: torch.Generator | None, allowed: Callable[[int], Any], use_cache: bool,
            tick: Tick, batch: int = 1,
            emit: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Extend ``prompt`` by n positions with the stage's sampling (``Decoder.generate``; KV
    cached, or recomputing the whole sequence at every step: the same tokens). ``allowed``
    is called once per new position: progress counts there; ``emit`` gets the new ids as
    they come."""

    def counted(i: int) -> Any:
        tick(batch)
        return allowed(i)

    prompt = prompt.to(next(dec.lm.parameters()).device)
    return dec.generate(prompt, n, emit=emit, temperature=s.temperature, top_k=s.top_k,
                        top_p=s.top_p, generator=generator, allowed=counted,
                        use_cache=use_cache).cpu()


def semantic_stage(dec: Decoder, window: int, prompt: torch.Tensor, n: int, s: Sampling,
                   generator: torch.Generator | None = None, use_cache: bool = True,
                   tick: Tick = _no_tick, out: Stream | None = None) -> torch.Tensor:
    """Semantic tokens [P] -> the next n [n], each also appended to ``out`` when drawn.
    Windows re-prompt with BOS and the most recent tokens."""
    vocab = dec.lm.cfg.layout
    tokens = prompt.long().cpu()
    P = tokens.shape[0]
    emit = None if out is None else (lambda ids: out.extend(vocab.semantic_tokens(ids[0].cpu())))
    for start, known, end in plan_chunks(P, P + n, window, history(window)):
        ids, _ = L.semantic_sequence(vocab, tokens[start:known])
        seq = _extend(dec, ids[None], end - known, s, generator, L.allowed_semantic(vocab),
                      use_cache, tick, emit=emit)
        tokens = torch.cat([tokens, L.semantic_from_sequence(vocab, seq[0])[known - start:]])
    return tokens[P:]


def coarse_stage(dec: Decoder, window: int, semantic: torch.Tensor | Stream | None, total: int,
                 coarse: torch.Tensor, fpt: int, s: Sampling,
                 generator: torch.Generator | None = None, use_cache: bool = True,
                 tick: Tick = _no_tick, out: Stream | None = None) -> torch.Tensor:
    """Semantic tokens (``total`` of them) and the known coarse codes [Kc, fpt * P] ->
    coarse codes [Kc, fpt * total]; each window's new frames are appended to ``out``.
    ``semantic`` None: no semantic prefix (the acoustic LM's layout, ``acoustic_stage``)."""
    vocab, kc = dec.lm.cfg.layout, dec.lm.cfg.coarse_levels
    src = None if semantic is None else _source(semantic)
    codes = coarse[:kc].long().cpu()
    if codes.shape[1] % fpt:
        raise ValueError(f"{codes.shape[1]} known frames are not whole semantic tokens")
    for start, known, end in plan_chunks(codes.shape[1] // fpt, total, window, history(window)):
        sem = src.wait(end)[start:end] if src is not None else torch.zeros(0, dtype=torch.long)
        n = sem.shape[0]  # the semantic prefix: the window's tokens, or none
        ids, _ = L.coarse_sequence(vocab, sem, codes[:, fpt * start:], kc)
        seq = _extend(dec, ids[None], fpt * (end - known) * kc, s, generator,
                      L.allowed_coarse(vocab, n, kc), use_cache, tick)
        new = L.coarse_from_sequence(vocab, seq[0], n, kc)[:, fpt * (known - start):]
        codes = torch.cat([codes, new], 1)
        if out is not None:
            out.extend(new)
    return codes


def acoustic_stage(dec: Decoder, window: int, total: int, coarse: torch.Tensor, fpt: int,
                   s: Sampling, generator: torch.Generator | None = None, use_cache: bool = True,
                   tick: Tick = _no_tick, out: Stream | None = None) -> torch.Tensor:
    """The known coarse codes [Kc, fpt * P] -> [Kc, fpt * total] with no semantic tokens
    (AudioLM's acoustic-only ablation): ``coarse_stage``'s windows (``window`` counts
    semantic tokens' worth of frames) with an empty semantic prefix."""
    return coarse_stage(dec, window, None, total, coarse, fpt, s, generator, use_cache, tick, out)


def fine_stage(dec: Decoder, window: int, coarse: torch.Tensor | Stream, first: int, total: int,
               s: Sampling, generator: torch.Generator | None = None, use_cache: bool = True,
               tick: Tick = _no_tick, group: int = FINE_GROUP) -> torch.Tensor:
    """Coarse codes [Kc, total] -> all levels [K, total - first] of frames [first, total),
    in independent windows of one length, ``group`` windows per batched call, each group
    as soon as its coarse frames are there."""
    vocab, kc = dec.lm.cfg.layout, dec.lm.cfg.coarse_levels
    src = _source(coarse)
    length, starts = fine_windows(first, total, window)
    out = torch.zeros(vocab.levels, total - first, dtype=torch.long)
    written = first
    for b in range(0, len(starts), group):
        batch = starts[b:b + group]
        c = src.wait(batch[-1] + length)[:kc].long()
        prompt = torch.stack([L.fine_sequence(vocab, _pad_levels(c[:, a:a + length], vocab.levels),
                                              kc)[0][:length * kc + 1] for a in batch])
        seq = _extend(dec, prompt, length * (vocab.levels - kc), s, generator,
                      L.allowed_fine(vocab, length, kc), use_cache, tick, len(batch))
        codes = L.fine_from_sequence(vocab, seq, length, kc)  # [B, K, length]
        for a, w in zip(batch, codes):
            lo = max(a, written)  # a moved-back last window adds only its new frames
            out[:, lo - first:a + length - first] = w[:, lo - a:]
            written = a + length
    return out


def _pad_levels(coarse: torch.Tensor, levels: int) -> torch.Tensor:
    """Coarse codes [Kc, F] with zero codes for the other levels: ``fine_sequence`` wants
    all levels and uses only the coarse ones in the part we keep (the prompt)."""
    return torch.cat([coarse, coarse.new_zeros(levels - coarse.shape[0], coarse.shape[1])])


def delay_stage(dec: Decoder, window: int, semantic: torch.Tensor | Stream, total: int,
                known: torch.Tensor, fpt: int, s: Sampling,
                generator: torch.Generator | None = None, use_cache: bool = True,
                tick: Tick = _no_tick) -> torch.Tensor:
    """Semantic tokens (``total``) and the known codes [K, fpt * P] -> codes [K, fpt * total],
    every level at once (MusicGen's delay pattern). In the K - 1 steps after a window's
    prompt, the upper levels of prompt frames (delayed into those steps) are forced to the
    known codes."""
    vocab = dec.lm.cfg.layout
    K = vocab.levels
    src = _source(semantic)
    codes = known.long().cpu()
    for start, known_t, end in plan_chunks(codes.shape[1] // fpt, total, window, history(window)):
        n, frames, fk = end - start, fpt * (end - start), fpt * (known_t - start)
        ids, _ = L.delay_sequence(vocab, src.wait(end)[start:end], codes[:, fpt * start:])
        prefix = n + 1 + fk  # ids continue with the K - 1 steps holding the known frames' tails
        steps = L.sequence_length("delay", vocab, n, 0, fpt) - prefix
        allowed = _forcing(L.allowed_delay(vocab, n, frames), ids[prefix:], prefix)
        seq = _extend(dec, ids[None, :prefix], steps, s, generator, allowed, use_cache, tick, K)
        codes = torch.cat([codes, L.delay_from_sequence(vocab, seq[0], n)[:, fk:]], 1)
    return codes


def _forcing(base: Callable[[int], Sequence[L.Range]], known: torch.Tensor,
             first: int) -> Callable[[int], list[L.Range]]:
    """``base``, with the non-PAD ids of ``known`` [steps, K] forced from step ``first`` on."""

    def allowed(i: int) -> list[L.Range]:
        r = list(base(i))
        j = i - first
        if 0 <= j < known.shape[0]:
            r = [(int(t), int(t) + 1) if t != L.PAD else r[k] for k, t in enumerate(known[j])]
        return r

    return allowed


# -- running the stages ----------------------------------------------------------------


class Cancelled(Exception):
    """Another stage failed: this one stops at its next step."""


def run_stages(jobs: list[tuple[str, Callable[[Tick], Any], Stream | None]], threads: bool,
               tick_for: Callable[[str], Tick]) -> dict[str, Any]:
    """Run ``job(tick)`` for each ``(name, job, output stream)``: in turn, or each in a
    thread (the last in this one). A failing stage closes its stream with its error (the
    stages after it stop) and cancels the others at their next step; the first real error
    is raised."""
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    cancel = threading.Event()

    def run(name: str, job: Callable[[Tick], Any], out: Stream | None) -> None:
        tick = tick_for(name)

        def checked(k: int) -> None:
            if cancel.is_set():
                raise Cancelled(name)
            tick(k)

        try:
            results[name] = job(checked)
        except BaseException as e:
            errors.append(e)
            cancel.set()
            if out is not None:
                out.close(e)
            if not threads:
                raise
        else:
            if out is not None:
                out.close()

    if not threads:
        for job in jobs:
            run(*job)
        return results
    workers = [threading.Thread(target=run, args=job, name=f"aimusic-{job[0]}", daemon=True)
               for job in jobs[:-1]]
    for w in workers:
        w.start()
    try:
        run(*jobs[-1])
        for w in workers:
            w.join()
    except BaseException:  # interrupted while joining: stop the others, do not wait for them
        cancel.set()
        raise
    if errors:
        real = [e for e in errors if not isinstance(e, (StageFailed, Cancelled))]
        raise (real or errors)[0]
    return results
