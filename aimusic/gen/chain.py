"""The chain of models: loading them (``load_chain``) and sampling tokens stage by stage
(``sample_tokens``); ``continuation`` turns audio into tokens and back.

AudioLM's recipe, stage by stage, each stage KV-cached decoding (``decode.Decoder``):

```
prompt audio --codec--> codes [K, 3P] --------------------------+
             --semantic model--> semantic [P]                   |
semantic LM:  semantic [P] -> [P + N]                           |
coarse LM:    semantic [P + N], coarse codes [Kc, 3P] -> [Kc, 3(P + N)]
fine LM:      coarse codes of each window of new frames -> all K levels
              (flat layout; with the delay layout one LM makes all K levels instead)
codec:        the prompt's last frames + the new frames -> audio, joined to the prompt
```

The ``acoustic`` layout is AudioLM's acoustic-only ablation: no semantic stage; the
acoustic LM (a coarse LM trained without semantic tokens) extends the prompt's coarse
codes, and the flat layout's fine LM makes the other levels. It is used only when asked
for (``--layout acoustic``).

The stages and their windows are in ``stages``; with two or more cores they run side by
side in threads (``stages.run_stages``), the same tokens as in turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.errors import AimusicError, ArtifactError
from aimusic.gen import stages as S
from aimusic.gen.decode import Decoder
from aimusic.gen.stages import Sampling, Tick, fine_windows, history, plan_chunks
from aimusic.lm import layouts as L
from aimusic.progress import Bars

MIN_PROMPT_SECONDS = 0.5
SILENCE_DB = -60.0
LAYOUT_STAGES = {"flat": ("semantic", "coarse", "fine"), "delay": ("semantic", "delay"),
                 "acoustic": ("acoustic", "fine")}  # acoustic: AudioLM's acoustic-only ablation


# -- sampling settings -----------------------------------------------------------------


# AudioLM's temperatures for coarse and fine; the delay stage makes coarse and fine levels
# at once; the acoustic stage is a coarse one. The semantic stage samples at 1.0, not
# AudioLM's 0.6: our small semantic LMs at 0.6 repeat one token for the whole continuation
# (1 distinct token in 250 on the demo prompt; 32 at 1.0, where the truth has 43 in 500).
DEFAULT_TEMPERATURE = {"semantic": 1.0, "coarse": 0.8, "fine": 0.6, "delay": 0.8, "acoustic": 0.8}


SAMPLING_FILE = "sampling.json"  # a models folder's own sampling defaults, per stage


def sampling_for(stages: tuple[str, ...], temperature: list[float] | None = None,
                 top_k: list[int] | None = None, top_p: list[float] | None = None,
                 defaults: dict[str, Sampling] | None = None) -> dict[str, Sampling]:
    """Per-stage settings from lists of one value (every stage) or one per stage; an
    empty or missing list keeps the defaults: ``defaults`` (a chain's, from its models
    folder's sampling.json) where it names the stage, else DEFAULT_TEMPERATURE and
    ``Sampling``'s. top-k 0 and top-p 1 turn them off."""

    def per_stage(values: list | None, name: str) -> list | None:
        if not values:
            return None
        if len(values) == 1:
            return list(values) * len(stages)
        if len(values) != len(stages):
            raise AimusicError(f"--{name}: give one value, or one per stage ({', '.join(stages)}); "
                               f"got {len(values)}")
        return list(values)

    temps = per_stage(temperature, "temperature")
    ks = per_stage(top_k, "top-k")
    ps = per_stage(top_p, "top-p")
    out = {}
    for i, s in enumerate(stages):
        base = (defaults or {}).get(s) or Sampling(DEFAULT_TEMPERATURE[s])
        t = float(temps[i]) if temps else base.temperature
        k = int(ks[i]) if ks else base.top_k
        p = float(ps[i]) if ps else base.top_p
        if t < 0 or (k is not None and k < 0) or (p is not None and not 0 < p <= 1):
            raise AimusicError(f"{s}: temperature must be >= 0, top-k >= 0 and top-p in (0, 1]")
        out[s] = Sampling(t, k or None, p if p is not None and p < 1 else None)
    return out


def read_sampling(models_dir: Path) -> dict[str, Sampling]:
    """The sampling defaults a models folder states in sampling.json (none: {}), e.g.
    ``{"coarse": {"temperature": 1.0, "top_k": 0}}``: the settings its figures were
    measured with. Stages it does not name keep the global defaults."""
    import json

    path = models_dir / SAMPLING_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(path, f"unreadable sampling defaults: {e}") from e
    keys = {"temperature", "top_k", "top_p"}
    out = {}
    for stage, given in data.items():
        if stage.startswith("_"):  # "_note": why these settings
            continue
        if stage not in DEFAULT_TEMPERATURE or not isinstance(given, dict) or set(given) - keys:
            raise ArtifactError(path, f"{stage!r}: expected a stage ({', '.join(DEFAULT_TEMPERATURE)}) "
                                      f"with some of {', '.join(sorted(keys))}")
        try:
            out[stage] = sampling_for((stage,), [given["temperature"]] if "temperature" in given else None,
                                      [given["top_k"]] if "top_k" in given else None,
                                      [given["top_p"]] if "top_p" in given else None)[stage]
        except (AimusicError, TypeError, ValueError) as e:
            raise ArtifactError(path, f"{stage}: {e}") from e
    return out


# -- the models ------------------------------------------------------------------------


@dataclass
class Chain:
    """The codec, the semantic model and the LMs of one layout, checked to belong together."""

    codec: Any  # aimusic.codec.model.Codec
    semantic: Any  # aimusic.semantic.model.SemanticModel
    lms: dict[str, Any]  # stage -> TokenLM
    windows: dict[str, int]  # stage -> window (semantic tokens; frames for fine)
    layout: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    defaults: dict[str, Sampling] = field(default_factory=dict)  # its folder's sampling.json
    decoders: dict[str, Decoder] = field(init=False)

    def __post_init__(self) -> None:
        self.decoders = {s: Decoder(lm) for s, lm in self.lms.items()}

    @property
    def stages(self) -> tuple[str, ...]:
        """The layout's stages that are loaded: a flat or acoustic chain may have no fine LM."""
        return tuple(s for s in LAYOUT_STAGES[self.layout] if s in self.lms)

    def runs_fine(self, fine: bool = True) -> bool:
        """Whether the fine stage runs: asked for (``fine``) and a fine LM is loaded."""
        return fine and "fine" in self.stages

    def sampling(self, temperature: list[float] | None = None, top_k: list[int] | None = None,
                 top_p: list[float] | None = None) -> dict[str, Sampling]:
        """``sampling_for`` this chain's stages, from its own defaults."""
        return sampling_for(self.stages, temperature, top_k, top_p, self.defaults)

    @property
    def sample_rate(self) -> int:
        return int(self.codec.cfg.sample_rate)

    @property
    def frames_per_token(self) -> int:
        return int(self.semantic.cfg.hop // self.codec.cfg.hop)

    @property
    def token_samples(self) -> int:
        return int(self.semantic.cfg.hop)

    @property
    def coarse_lm(self) -> str | None:
        """The stage that makes the coarse levels for the fine LM: coarse, acoustic or none."""
        return {"flat": "coarse", "acoustic": "acoustic"}.get(self.layout)

    def max_prompt_tokens(self) -> int:
        """Semantic tokens of prompt the first LM (semantic; acoustic in the acoustic layout)
        keeps in its context."""
        return history(self.windows[self.stages[0]])


def choose_layout(models_dir: str | Path, layout: str | None) -> str:
    """``flat`` unless asked for another, or only the delay LM is there (``acoustic`` is only
    used when asked for)."""
    from aimusic.lm.model import lm_path

    if layout is not None:
        if layout not in LAYOUT_STAGES:
            raise AimusicError(f"unknown layout {layout!r}; choose {', '.join(LAYOUT_STAGES)}")
        return layout
    flat_there = lm_path(models_dir, "coarse").exists()
    return "delay" if lm_path(models_dir, "delay").exists() and not flat_there else "flat"


def lm_window(path: Path, cfg: Any, frames_per_token: int) -> int:
    """The window the LM was trained on (its file says), else the most its context holds."""
    from aimusic.artifacts import read_metadata

    most = L.fit_window(cfg.stage, cfg.layout, cfg.max_len, cfg.coarse_levels, frames_per_token)
    trained = int(read_metadata(path)["extra"].get("window", 0) or 0)
    return min(trained, most) if trained > 0 else most


def load_chain(models_dir: str | Path, layout: str | None = None, device: torch.device | str = "cpu",
               codec_path: str | Path | None = None,
               semantic_path: str | Path | None = None) -> Chain:
    """Load and check the models: missing ones name the command that makes them, and LMs
    trained on tokens of another codec or semantic model are refused. The fine LM is
    optional: without it the chain decodes the coarse levels alone, at the codec's lower
    bandwidth."""
    from aimusic.codec.model import load_codec
    from aimusic.codec.stream import codec_hash
    from aimusic.lm.model import lm_path, load_lm, reads
    from aimusic.semantic.model import load_semantic

    models_dir = Path(models_dir)
    device = torch.device(device)
    layout = choose_layout(models_dir, layout)
    codec = load_codec(codec_path or models_dir / "codec.safetensors", device)
    semantic = load_semantic(semantic_path or models_dir / "semantic.safetensors", device)
    if semantic.cfg.sample_rate != codec.cfg.sample_rate or semantic.cfg.hop % codec.cfg.hop:
        raise AimusicError(f"the semantic model ({semantic.cfg.sample_rate} Hz, hop "
                           f"{semantic.cfg.hop}) does not line up with the codec "
                           f"({codec.cfg.sample_rate} Hz, hop {codec.cfg.hop})")
    fpt = semantic.cfg.hop // codec.cfg.hop
    have = {"codec": codec_hash(codec), "semantic": semantic.source_hash}
    names = {"codec": getattr(codec, "source_path", "the codec"), "semantic": "the semantic model"}
    lms, windows = {}, {}
    for stage in LAYOUT_STAGES[layout]:
        path = lm_path(models_dir, stage)
        if stage == "fine" and not path.exists():
            continue
        if not path.exists():
            flag = " --layout delay" if layout == "delay" else ""
            raise ArtifactError(path, f"{stage} LM not found; train one with "
                                      f"`aimusic train-lm{flag} --stage {stage} --models {models_dir}`")
        lm = load_lm(path, stage, device)
        for role in reads(stage):
            h, made = have[role], lm.depends.get(role)
            if made != h:
                raise ArtifactError(path, f"was trained on tokens of {role} {made}, but {names[role]} "
                                          f"is {h}; use the models it was trained with, or "
                                          "tokenize again and retrain the LMs")
        cfg = lm.cfg
        want = (semantic.cfg.vocab, codec.cfg.levels, codec.cfg.codebook_size)
        if (cfg.clusters, cfg.levels, cfg.codebook_size) != want:
            raise ArtifactError(path, f"expects {cfg.clusters} clusters, {cfg.levels} levels of "
                                      f"{cfg.codebook_size}; the models give {want[0]}, {want[1]} "
                                      f"of {want[2]}")
        lms[stage], windows[stage] = lm, lm_window(path, cfg, fpt)
    chain = Chain(codec, semantic, lms, windows, layout, device, read_sampling(models_dir))
    c = chain.coarse_lm
    if c is not None and "fine" in lms and lms[c].cfg.coarse_levels != lms["fine"].cfg.coarse_levels:
        raise AimusicError(f"the {c} and fine LMs split the levels differently "
                           f"({lms[c].cfg.coarse_levels} vs {lms['fine'].cfg.coarse_levels})")
    return chain


# -- the chain -------------------------------------------------------------------------


def stage_tokens(chain: Chain, prompt_tokens: int, n: int) -> dict[str, int]:
    """Tokens each stage samples for n semantic tokens after a prompt of ``prompt_tokens``
    (fine: with the dropped overlap; delay: every stream of every step; acoustic: the coarse
    levels, with no semantic stage)."""
    fpt, K, P, win = chain.frames_per_token, chain.codec.cfg.levels, prompt_tokens, chain.windows
    if chain.layout == "delay":
        chunks = plan_chunks(P, P + n, win["delay"], history(win["delay"]))
        return {"semantic": n, "delay": sum((fpt * (e - k) + K - 1) * K for _, k, e in chunks)}
    c = chain.coarse_lm
    assert c is not None
    kc = chain.lms[c].cfg.coarse_levels
    semantic = {"semantic": n} if "semantic" in chain.stages else {}
    if not chain.runs_fine():
        return {**semantic, c: fpt * n * kc}
    length, starts = fine_windows(fpt * P, fpt * (P + n), win["fine"])
    return {**semantic, c: fpt * n * kc, "fine": len(starts) * length * (K - kc)}


def stage_seed(seed: int, stage: str) -> int:
    """Each stage's own generator seed: a stage's tokens do not depend on another's draws,
    so stages can run side by side and still repeat exactly."""
    return int(hashlib.sha256(f"{seed}:{stage}".encode()).hexdigest()[:15], 16)


def sample_tokens(chain: Chain, semantic: torch.Tensor, codes: torch.Tensor, n: int,
                  sampling: dict[str, Sampling], seed: int = 0, use_cache: bool = True,
                  progress: Bars | None = None, threads: bool | None = None, fine: bool = True,
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, dict[str, float]]]:
    """Prompt semantic [P] and codes [K, fpt * P] (P may be 0) -> n new semantic tokens,
    their codes [K, fpt * n], and per stage: seconds (start to end), waited (for the stage
    before) and tokens. ``threads`` (default: when torch may use two or more threads) runs
    the stages side by side, one torch thread each. The acoustic layout has no semantic
    stage: it reads only the prompt's codes and returns no semantic tokens ([0]).
    ``fine=False``, or a chain with no fine LM, skips the fine stage: the codes are the
    coarse levels alone ([Kc, fpt * n]), which the codec decodes at its lower bandwidth
    (flat and acoustic layouts; the delay layout makes every level at once)."""
    return _sample(chain, semantic, codes, n, None, sampling, seed, use_cache, progress,
                   threads, fine)


def render_semantic(chain: Chain, semantic: torch.Tensor, codes: torch.Tensor,
                    new: torch.Tensor, sampling: dict[str, Sampling], seed: int = 0,
                    progress: Bars | None = None, fine: bool = True,
                    ) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """The acoustic stages alone, rendering semantic tokens made elsewhere (``speak``'s
    reading LM): after the prompt's semantic [P] and codes [K, fpt * P], the codes
    [K, fpt * n] of the ``new`` semantic tokens [n], and the stages' figures."""
    if new.dim() != 1 or "semantic" not in chain.stages:
        raise ValueError(f"semantic tokens {list(new.shape)} to render in the {chain.layout} "
                         "layout")
    _, new_codes, stats = _sample(chain, semantic, codes, new.numel(), new, sampling, seed,
                                  True, progress, None, fine)
    return new_codes, stats


def _sample(chain: Chain, semantic: torch.Tensor, codes: torch.Tensor, n: int,
            given: torch.Tensor | None, sampling: dict[str, Sampling], seed: int,
            use_cache: bool, progress: Bars | None, threads: bool | None, fine: bool,
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, dict[str, float]]]:
    """``sample_tokens``, or with ``given`` new semantic tokens ``render_semantic``."""
    fpt, P, K = chain.frames_per_token, semantic.shape[0], chain.codec.cfg.levels
    if codes.shape[1] != fpt * P:
        raise ValueError(f"{codes.shape[1]} prompt frames for {P} semantic tokens")
    if not fine and chain.layout == "delay":
        raise AimusicError("the delay layout has no fine stage to skip: it makes every level "
                           "at once")
    fine = chain.runs_fine(fine)
    stages = tuple(s for s in chain.stages
                   if (given is None or s != "semantic") and (fine or s != "fine"))
    sem_out = S.Stream(semantic.long().cpu()) if given is None else \
        S.Stream(torch.cat([semantic.long().cpu(), given.long().cpu()]), closed=True)
    c = chain.coarse_lm
    kc = chain.lms[c].cfg.coarse_levels if c is not None else K
    coarse_out = S.Stream(codes[:kc].long().cpu())
    jobs = _stage_jobs(chain, stages, semantic, codes, n, sem_out, coarse_out, sampling, seed,
                       use_cache)
    stats: dict[str, dict[str, float]] = {}
    results = _run_jobs(jobs, stage_tokens(chain, P, n), progress or Bars(False), threads, stats,
                        chain.device)
    new_sem = results.get("semantic", torch.zeros(0, dtype=torch.long)) if given is None else given
    if chain.layout == "delay":
        return new_sem, results["delay"][:, fpt * P:], stats
    new_codes = results["fine"] if fine else coarse_out.data[:, fpt * P:]
    assert new_codes.shape == (K if fine else kc, fpt * n)
    return new_sem, new_codes, stats


# stage, run, the stream it reads (None: the prompt alone), the stream it writes (None: none)
Job = tuple[str, Callable[[Tick], Any], "S.Stream | None", "S.Stream | None"]


def _stage_jobs(chain: Chain, stages: tuple[str, ...], semantic: torch.Tensor,
                codes: torch.Tensor, n: int, sem_out: S.Stream, coarse_out: S.Stream,
                sp: dict[str, Sampling], seed: int, use_cache: bool) -> list[Job]:
    """Each stage to run as a job: its decoder, window, the stream it reads and the one it
    writes (semantic -> coarse or delay; coarse or acoustic -> fine), its own generator."""
    fpt, P = chain.frames_per_token, semantic.shape[0]
    decs, win, T = chain.decoders, chain.windows, P + n
    gens = {s: torch.Generator(device=chain.device).manual_seed(stage_seed(seed, s))
            for s in chain.stages}
    jobs: list[Job] = []
    if "semantic" in stages:
        jobs.append(("semantic", lambda t: S.semantic_stage(
            decs["semantic"], win["semantic"], semantic, n, sp["semantic"], gens["semantic"],
            use_cache, t, sem_out), None, sem_out))
    if chain.layout == "delay":
        jobs.append(("delay", lambda t: S.delay_stage(
            decs["delay"], win["delay"], sem_out, T, codes, fpt, sp["delay"], gens["delay"],
            use_cache, t), sem_out, None))
        return jobs
    if chain.layout == "acoustic":  # no semantic tokens: the prompt's codes alone
        jobs.append(("acoustic", lambda t: S.acoustic_stage(
            decs["acoustic"], win["acoustic"], T, codes, fpt, sp["acoustic"],
            gens["acoustic"], use_cache, t, coarse_out), None, coarse_out))
    else:
        jobs.append(("coarse", lambda t: S.coarse_stage(
            decs["coarse"], win["coarse"], sem_out, T, codes, fpt, sp["coarse"],
            gens["coarse"], use_cache, t, coarse_out), sem_out, coarse_out))
    if "fine" in stages:
        jobs.append(("fine", lambda t: S.fine_stage(
            decs["fine"], win["fine"], coarse_out, fpt * P, fpt * T, sp["fine"],
            gens["fine"], use_cache, t), coarse_out, None))
    return jobs


def _run_jobs(jobs: list[Job], totals: dict[str, int], progress: Bars, threads: bool | None,
              stats: dict[str, dict[str, float]], device: torch.device) -> dict[str, Any]:
    """Run the jobs (side by side, one torch thread each, when ``threads``), with a bar
    each; ``stats`` gets each stage's seconds, tokens, and time waited for its input."""

    def timed(stage: str, fn: Callable[[Tick], Any], src: S.Stream | None) -> Callable[[Tick], Any]:
        def run(tick: Tick) -> Any:
            t0, count = time.perf_counter(), [0]

            def counted(k: int) -> None:
                count[0] += k
                tick(k)

            with _autocast(device), torch.inference_mode():  # thread-local modes
                r = fn(counted)
            stats[stage] = {"seconds": time.perf_counter() - t0, "tokens": count[0],
                            "waited": src.waited if src is not None else 0.0}
            return r

        return run

    if threads is None:
        threads = torch.get_num_threads() >= 2
    threads = threads and len(jobs) > 1  # a stage alone keeps every thread for its ops
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(1)  # one core per stage: several threads per op would fight
    try:
        with progress:
            bars = {s: progress.bar(s, totals[s]) for s, *_ in jobs}
            return S.run_stages([(s, timed(s, fn, src), out) for s, fn, src, out in jobs],
                                threads, lambda s: bars[s].advance)
    finally:
        torch.set_num_threads(before)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fresh_seed(seed: int | None) -> int:
    """``seed``, or a new one (reported, so the run can be repeated)."""
    import secrets

    return seed if seed is not None else secrets.randbelow(2**31)


# -- audio in and out ------------------------------------------------------------------


def encode_prompt(chain: Chain, audio: np.ndarray, max_tokens: int,
                  name: str = "<prompt>", min_seconds: float = MIN_PROMPT_SECONDS,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The last whole semantic tokens of ``audio`` (at most ``max_tokens``) -> semantic [P]
    and codes [K, fpt * P], aligned to end at the audio's last sample. A prompt shorter
    than ``min_seconds`` or silent is refused, with ``name`` in the message."""
    from aimusic.audio import rms_db
    from aimusic.codec.stream import encode_stream

    hop = chain.token_samples
    P = max(1, min(max_tokens, audio.size // hop))
    if audio.size < min_seconds * chain.sample_rate or audio.size < hop:
        raise AimusicError(f"{name}: a prompt of {audio.size / chain.sample_rate:.2f} s is too short; "
                           f"give at least {min_seconds:g} s")
    x = np.ascontiguousarray(audio[audio.size - P * hop:], dtype=np.float32)
    level = rms_db(x)
    if level < SILENCE_DB:
        raise AimusicError(f"{name}: the prompt is silent ({level:.0f} dBFS)")
    sem = torch.from_numpy(chain.semantic.tokens(x)).long()
    codes, _ = encode_stream(chain.codec, iter([x]), chain.codec.cfg.levels, device=chain.device)
    fpt = chain.frames_per_token
    return sem[:P], codes[:, :fpt * P].long()


def decode_codes(chain: Chain, codes: torch.Tensor) -> np.ndarray:
    from aimusic.codec.stream import decode_all

    return decode_all(chain.codec, codes, chain.device)
