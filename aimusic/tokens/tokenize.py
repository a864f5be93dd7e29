"""`aimusic tokenize`: a folder of audio -> semantic and acoustic tokens in shards.

The job is planned from the sorted list of files alone: shard ``k`` holds files
``[k * F, (k + 1) * F)`` of that list (``F`` = files per shard), whatever the number of
workers or machines. A split run (``--num-shards n --shard-index i``, or torchrun's
WORLD_SIZE/RANK) takes the shards with ``k % n == i``, so shard numbers are global and
parts never overlap; the last part to finish merges the part manifests into
``manifest.json`` (``aimusic tokenize-merge`` does it by hand). The format is in shards.py.

Why it is resumable and deterministic:

- A shard is written to a temporary file and renamed (``fileio.atomic_path``), so a
  ``shard-NNNNN.safetensors`` that exists is complete. Its metadata names the model
  hashes, settings and files it was made from; a rerun skips every shard whose metadata
  matches the plan and reads its items back from that metadata, so a crash (even
  ``kill -9``) costs at most the shards in flight.
- Every file is tokenized on its own (no padding shared across files) with one torch
  thread and one BLAS thread, and workers are processes that share out whole files. The
  numbers computed for a file therefore never depend on ``--workers``, and shards are
  byte-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from aimusic.audio import AUDIO_EXTENSIONS, list_audio_files, load_audio
from aimusic.errors import AimusicError, ArtifactError, AudioError
from aimusic.fileio import write_json, writer_lock
from aimusic.progress import Bars
from aimusic.tokens.shards import (
    MANIFEST,
    FileTokens,
    ShardRecord,
    TokenSpec,
    build_manifest,
    merge_parts,
    part_names,
    read_done_shard,
    shard_name,
    write_errors,
    write_shard,
)

log = logging.getLogger("aimusic")

DEFAULT_FILES_PER_SHARD = 64


class SemanticLike(Protocol):
    """What tokenize needs of a semantic model (``aimusic.semantic.model.SemanticModel``)."""

    cfg: Any  # sample_rate, hop (samples per token), token_rate, vocab (distinct tokens)
    source_hash: str

    def tokens(self, audio: np.ndarray) -> np.ndarray: ...


def make_spec(codec: Any, semantic: SemanticLike, min_seconds: float | None = None) -> TokenSpec:
    """The spec of a codec and semantic model pair; refuses pairs whose rates do not align."""
    from aimusic.codec.stream import codec_hash

    c, s = codec.cfg, semantic.cfg
    if not semantic.source_hash:
        raise ArtifactError("<semantic>", "an unsaved semantic model has no hash; save and load it")
    if int(s.sample_rate) != int(c.sample_rate):
        raise AimusicError(f"the semantic model runs at {s.sample_rate} Hz and the codec at "
                           f"{c.sample_rate} Hz; they must share a sample rate")
    if s.hop % c.hop:
        raise AimusicError(f"a semantic token ({s.hop} samples) is not a whole number of codec "
                           f"frames ({c.hop} samples)")
    min_samples = s.hop if min_seconds is None else max(s.hop, round(min_seconds * c.sample_rate))
    return TokenSpec(codec_hash(codec), semantic.source_hash, int(c.sample_rate), int(c.levels),
                     int(c.codebook_size), int(s.vocab), float(s.token_rate),
                     float(c.frame_rate), s.hop // c.hop, int(s.hop), int(min_samples))


# ----------------------------------------------------------------------------- planning


def list_sources(audio_dir: str | os.PathLike) -> list[str]:
    """Audio files under ``audio_dir`` as sorted relative POSIX paths: the plan's only input."""
    root = Path(audio_dir)
    files = list_audio_files(root)
    if root.is_file():
        return [root.name]
    return sorted(f.relative_to(root).as_posix() for f in files)


def plan_shards(sources: list[str], files_per_shard: int) -> list[list[str]]:
    """Consecutive groups of ``files_per_shard`` files; shard k is ``plan[k]``."""
    if files_per_shard < 1:
        raise AimusicError(f"files per shard must be at least 1, got {files_per_shard}")
    return [sources[i : i + files_per_shard] for i in range(0, len(sources), files_per_shard)]


def plan_hash(sources: list[str], files_per_shard: int) -> str:
    """Identity of a plan, so parts of different plans are never merged."""
    h = hashlib.sha256(f"{files_per_shard}\n".encode())
    for s in sources:
        h.update(s.encode() + b"\n")
    return h.hexdigest()[:16]


def part_shards(n_shards: int, num_parts: int, part_index: int) -> list[int]:
    """Shards part ``part_index`` of ``num_parts`` makes: round robin, so sizes stay even."""
    return [k for k in range(n_shards) if k % num_parts == part_index]


def resolve_split(num_parts: int | None, part_index: int | None,
                  env: dict[str, str] | None = None) -> tuple[int, int]:
    """(parts, index) from the flags, else torchrun's WORLD_SIZE/RANK, else (1, 0)."""
    env = dict(os.environ) if env is None else env
    if num_parts is None and part_index is not None:
        raise AimusicError("--shard-index needs --num-shards")
    if num_parts is None:
        num_parts, part_index = int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0"))
    elif part_index is None:
        raise AimusicError("--num-shards needs --shard-index (which part this run makes)")
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise AimusicError(f"part {part_index} of {num_parts} does not exist; "
                           f"--shard-index runs from 0 to --num-shards - 1")
    return num_parts, part_index


def default_workers(n_tasks: int, device: str) -> int:
    """One process per core (shared among torchrun's local ranks), never more than tasks."""
    if device.startswith("cuda"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_rank = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(per_rank, n_tasks))


# ----------------------------------------------------------------------------- one file


def tokenize_audio(codec: Any, semantic: SemanticLike, audio: np.ndarray, spec: TokenSpec,
                   device: str = "cpu") -> FileTokens:
    """Tokens of one mono signal at the spec's rate; the codec streams it in chunks."""
    from aimusic.codec.stream import encode_stream

    with torch.inference_mode():
        sem = np.asarray(semantic.tokens(audio))
        codes, n = encode_stream(codec, iter([audio]), spec.levels, device=device)
    if sem.shape != (audio.size // spec.semantic_hop,):
        raise RuntimeError(f"semantic model gave {sem.shape} tokens for {audio.size} samples, "
                           f"expected ({audio.size // spec.semantic_hop},)")
    acoustic = codes.numpy()
    assert acoustic.shape[1] >= spec.frames_per_token * sem.size, (acoustic.shape, sem.shape)
    return FileTokens(sem.astype(spec.dtype), acoustic.astype(spec.dtype), n)


def tokenize_file(codec: Any, semantic: SemanticLike, path: str | os.PathLike, spec: TokenSpec,
                  device: str = "cpu") -> FileTokens:
    """Tokens of one file; AudioError (naming the reason) for a file that cannot be used."""
    audio = load_audio(path, spec.sample_rate)
    if audio.size < spec.min_samples:
        raise AudioError(Path(path), f"too short: {audio.size / spec.sample_rate:.3f} s, at least "
                               f"{spec.min_samples / spec.sample_rate:.3f} s needed")
    return tokenize_audio(codec, semantic, audio, spec, device)


# ----------------------------------------------------------------------------- workers

Task = tuple[tuple[int, int], str]  # ((shard, position in shard), absolute path)
_worker: dict[str, Any] = {}


def _limit_threads() -> Any:
    """One torch thread and one BLAS thread: numbers must not depend on how work is split."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # librosa brings it; without it, BLAS keeps its own default
        return None
    return threadpool_limits(1)


@dataclass
class _CodecRecipe:
    """The codec as plain data: its weight-norm hooks do not pickle, and spawn must pickle."""

    cfg: Any
    state: dict[str, torch.Tensor]
    source_hash: str
    tokens_hash: str

    def build(self) -> Any:
        from aimusic.codec.model import Codec

        codec = Codec(self.cfg).fold_weight_norm()
        codec.load_state_dict(self.state)
        codec.source_hash = self.source_hash  # type: ignore[assignment]
        codec.tokens_hash = self.tokens_hash  # type: ignore[assignment]
        return codec.eval()


@dataclass
class Job:
    """What every worker needs: the models, the spec, the device."""

    codec: Any  # a Codec, or a _CodecRecipe on its way to a spawned worker
    semantic: SemanticLike
    spec: TokenSpec
    device: str


def _init_worker(job: Job) -> None:
    _limit_threads()
    if isinstance(job.codec, _CodecRecipe):
        job = dataclasses.replace(job, codec=job.codec.build().to(job.device))
    _worker["job"] = job


def _init_pool_worker(job: Job) -> None:
    _exit_with_parent()
    _init_worker(job)


def _exit_with_parent() -> None:
    """End this worker when the job process dies: after a kill -9 nothing else would, and
    an orphaned worker waits for tasks forever."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="aimusic-parent-watch").start()


def _work(task: Task) -> tuple[tuple[int, int], FileTokens | str]:
    key, path = task
    job: Job = _worker["job"]
    try:
        return key, tokenize_file(job.codec, job.semantic, path, job.spec, job.device)
    except AudioError as e:  # a bad file is data, not a failure of the job
        return key, e.reason


def _warm_up(job: Job) -> None:
    """One tiny call here before forking, so lazy imports and caches (librosa's chroma
    filters take seconds) are made once, not once per worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job.semantic.tokens(np.zeros(2 * job.spec.semantic_hop, np.float32))
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _in_process(job: Job) -> Iterator[None]:
    """Run workers' code in this process, with their thread limits, restored afterwards."""
    threads = torch.get_num_threads()
    limits = _limit_threads()
    _init_worker(job)
    try:
        yield
    finally:
        _worker.clear()
        torch.set_num_threads(threads)
        if limits is not None:
            limits.restore_original_limits()


def run_files(tasks: list[Task], workers: int,
              job: Job) -> Iterator[tuple[tuple[int, int], FileTokens | str]]:
    """Results of ``tasks``, in completion order; ``workers`` > 1 uses worker processes.

    At most four tasks per worker are in flight, so finished tokens wait in memory only
    until their shard is complete. On Linux workers are forked, as torch's DataLoader
    does: no re-import, no pickled models, and like DataLoader workers they set one torch
    thread before any work (a forked OpenMP pool is unsafe beyond that). Elsewhere, and
    with CUDA, they are spawned and get the models pickled, the codec as a recipe.
    """
    if workers <= 1:
        with _in_process(job):
            for t in tasks:
                yield _work(t)
        return
    import multiprocessing

    from aimusic.codec.stream import codec_hash

    # CUDA cannot be used again in a forked child of a process that has used it
    method = "fork" if sys.platform.startswith("linux") and "cuda" not in job.device else "spawn"
    if method == "spawn":
        state = {k: v.cpu() for k, v in job.codec.state_dict().items()}
        job = dataclasses.replace(job, codec=_CodecRecipe(job.codec.cfg, state,
                                                          job.codec.source_hash,
                                                          codec_hash(job.codec)))
    else:
        _warm_up(job)
    ctx = multiprocessing.get_context(method)
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=(job,))
    todo = iter(tasks)
    running: set[Future] = set()
    try:
        while True:
            for t in todo:
                running.add(ex.submit(_work, t))
                if len(running) >= 4 * workers:
                    break
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _done_shards(out: Path, plan: list[list[str]], mine: list[int],
                 spec: TokenSpec) -> dict[int, ShardRecord]:
    """Records of this part's shards that a previous run finished; for the others, remove
    the temporary files a killed writer left (only this part ever writes them)."""
    records = {}
    for k in mine:
        rec = read_done_shard(out / shard_name(k), k, plan[k], spec)
        if rec is not None:
            records[k] = rec
            continue
        for tmp in out.glob(f".shard-{k:05d}.tmp*.safetensors"):
            with contextlib.suppress(OSError):
                tmp.unlink()
    return records


def _try_merge(out_dir: Path, num_parts: int) -> Path | None:
    """Merge when this was the last part to finish; otherwise say what is left."""
    try:
        return merge_parts(out_dir, num_parts)
    except ArtifactError as e:
        log.info("not merged yet: %s", e.reason)
        return None


# ----------------------------------------------------------------------------- the job


@dataclass
class TokenizeResult:
    """What a run did; ``new_seconds / wall_seconds`` is its speed in x real time."""

    files: int  # files in this part
    items: int  # files tokenized (including those of resumed shards)
    skipped: int  # files listed in the errors file
    shards: int
    resumed_shards: int
    seconds: float  # audio in this part's items
    new_seconds: float  # audio tokenized by this run
    semantic_tokens: int
    acoustic_frames: int
    wall_seconds: float
    workers: int
    manifest: Path  # manifest.json, or this part's manifest
    errors_path: Path
    merged: Path | None  # manifest.json when this run completed the dataset

    @property
    def x_realtime(self) -> float:
        return self.new_seconds / max(self.wall_seconds, 1e-9)


def tokenize(
    audio_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    codec: Any,
    semantic: SemanticLike,
    *,
    workers: int | None = None,
    num_parts: int = 1,
    part_index: int = 0,
    files_per_shard: int = DEFAULT_FILES_PER_SHARD,
    min_seconds: float | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> TokenizeResult:
    """Tokenize part ``part_index`` of ``num_parts`` of the audio under ``audio_dir``.

    Shards already in ``out_dir`` from the same plan and models are kept; the rest are
    made with ``workers`` processes (default: one per core). ``on_shard(k)`` runs after
    shard k is written (tests use it to crash a run).
    """
    t0 = time.perf_counter()
    audio_dir, out = Path(audio_dir), Path(out_dir)
    device = str(device)
    if workers is not None and workers < 1:
        raise AimusicError(f"--workers must be at least 1, got {workers}")
    spec = make_spec(codec, semantic, min_seconds)
    sources = list_sources(audio_dir)
    if not sources:
        raise AimusicError(f"{audio_dir}: no audio files found ({', '.join(AUDIO_EXTENSIONS)})")
    plan = plan_shards(sources, files_per_shard)
    mine = part_shards(len(plan), num_parts, part_index)
    out.mkdir(parents=True, exist_ok=True)

    lock = out / (".tokenize.lock" if num_parts == 1 else f".tokenize-part-{part_index}.lock")
    with writer_lock(lock, "tokenize"):  # one writer per folder (per part of a job array)
        records = _done_shards(out, plan, mine, spec)
        todo = [k for k in mine if k not in records]
        resumed = len(records)
        base = audio_dir.parent if audio_dir.is_file() else audio_dir
        tasks: list[Task] = [((k, j), str(base / src)) for k in todo for j, src in enumerate(plan[k])]
        # largest files of each shard first: less time with one worker busy and the rest idle
        tasks.sort(key=lambda t: (t[0][0], -_size(t[1])))
        results: dict[int, list[FileTokens | str]] = {k: [""] * len(plan[k]) for k in todo}
        left = {k: len(plan[k]) for k in todo}
        n_workers = workers if workers is not None else default_workers(len(tasks), device)
        n_files = sum(len(plan[k]) for k in mine)
        new_seconds = 0.0
        t0 = time.perf_counter()
        # no refresh thread: worker processes are forked from this one
        with Bars(progress, lines_every=30.0, eta=True, auto_refresh=False) as bars:
            bar = bars.bar("tokenize", n_files, n_files - len(tasks))
            for (k, j), r in run_files(tasks, n_workers, Job(codec, semantic, spec, device)):
                results[k][j] = r
                seconds = 0.0 if isinstance(r, str) else r.num_samples / spec.sample_rate
                new_seconds += seconds
                speed = new_seconds / max(1e-9, time.perf_counter() - t0)
                bar.advance(1, f"{new_seconds / 3600:.2f} h audio  {speed:.1f}x real time")
                left[k] -= 1
                if left[k] == 0:
                    records[k] = write_shard(out / shard_name(k), k, plan[k], results.pop(k), spec)
                    if on_shard is not None:
                        on_shard(k)

        info = {"source_dir": str(audio_dir), "files": len(sources), "files_per_shard": files_per_shard,
                "num_shards": len(plan), "plan": plan_hash(sources, files_per_shard)}
        if num_parts > 1:
            info["part"] = {"index": part_index, "count": num_parts}
        manifest, errors = build_manifest(spec, records.values(), info)
        m_name, e_name = part_names(part_index, num_parts)
        write_errors(out / e_name, errors)
        write_json(out / m_name, manifest)  # last: the manifest marks a finished part
        merged = out / MANIFEST if num_parts == 1 else _try_merge(out, num_parts)
        return TokenizeResult(
            files=n_files, items=len(manifest["items"]), skipped=len(errors), shards=len(mine),
            resumed_shards=resumed, seconds=manifest["seconds"], new_seconds=new_seconds,
            semantic_tokens=manifest["semantic_tokens"], acoustic_frames=manifest["acoustic_frames"],
            wall_seconds=time.perf_counter() - t0, workers=n_workers, manifest=out / m_name,
            errors_path=out / e_name, merged=merged)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
