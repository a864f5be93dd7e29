"""Audio collections for training: train/validation split, random segments from files.

Segments are decoded on demand from the files (never the whole corpus in memory). A file
that cannot be read is skipped and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimusic.audio import AudioInfo, audio_info, list_audio_files, load_audio
from aimusic.errors import AimusicError, AudioError

log = logging.getLogger("aimusic")


@dataclass
class Collection:
    root: Path
    train: list[AudioInfo]
    val: list[AudioInfo]
    skipped: list[tuple[Path, str]]


def _stable_fraction(path: Path) -> float:
    return int(hashlib.sha1(path.name.encode()).hexdigest()[:8], 16) / 2**32


def _readable(paths: list[Path], skipped: list[tuple[Path, str]]) -> list[AudioInfo]:
    """Infos of the files that open and hold audio; the rest go to ``skipped``, reported."""
    ok = []
    for f in paths:
        try:
            info = audio_info(f)
            if info.frames == 0:
                raise AudioError(f, "contains no audio (zero length)")
            ok.append(info)
        except AudioError as e:
            skipped.append((f, e.reason))
            log.warning("skipping %s", e)
    return ok


def scan_all(
    roots: list[str | Path] | str | Path, val_dir: str | Path | None = None
) -> Collection:
    """Train and validation files of one or several folders.

    Without ``val_dir`` each folder is split by ``scan``'s rules and the splits merged; with
    it, everything under the folders trains and ``val_dir`` (read once) validates.
    """
    paths = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
    root = paths[0] if len(paths) == 1 else Path(
        os.path.commonpath([str(p.resolve()) for p in paths]))
    if val_dir is not None:
        skipped: list[tuple[Path, str]] = []
        train = [i for p in paths for i in _readable(list_audio_files(p), skipped)]
        val = _readable(list_audio_files(val_dir), skipped)
        return _checked(Collection(root, train, val, skipped))
    parts = [scan(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    return Collection(root, [i for c in parts for i in c.train], [i for c in parts for i in c.val],
                      [s for c in parts for s in c.skipped])


def scan(root: str | Path, val_fraction: float = 0.05) -> Collection:
    """Split the audio under ``root`` into train and validation files.

    Files below a directory named ``val`` (or ``valid``) validate, files below ``test``
    are left out; without a ``val`` directory a stable ``val_fraction`` of files (chosen by
    name hash) validates.
    """
    root = Path(root)
    skipped: list[tuple[Path, str]] = []
    infos = _readable(list_audio_files(root), skipped)
    train: list[AudioInfo] = []
    val: list[AudioInfo] = []
    for info in infos:
        rel = info.path.relative_to(root) if info.path.is_relative_to(root) else info.path
        dirs = {d.lower() for d in rel.parts[:-1]}
        if "test" in dirs:
            continue
        (val if dirs & {"val", "valid", "validation"} else train).append(info)
    if not val and len(train) >= 2:
        held = [i for i in train if _stable_fraction(i.path) < val_fraction] or [train[-1]]
        train = [i for i in train if i not in held]
        val = held
    return _checked(Collection(root, train, val, skipped))


def _checked(c: Collection) -> Collection:
    if not c.train:
        raise AimusicError(f"{c.root}: no readable training audio found ({len(c.skipped)} skipped)")
    return c


class SegmentSampler:
    """Random fixed-length segments, files drawn in proportion to their duration.

    Its random state is a numpy Generator whose state is saved with training state, so a
    resumed run draws the same segments an uninterrupted one would.
    """

    def __init__(self, files: list[AudioInfo], sr: int, seconds: float, seed: int) -> None:
        self.files, self.sr, self.seconds = files, sr, seconds
        durations = np.array([f.duration for f in files], dtype=np.float64)
        self.p = durations / durations.sum()
        self.rng = np.random.default_rng(seed)

    def segment(self) -> np.ndarray:
        n = int(round(self.seconds * self.sr))
        for _ in range(10):  # avoid silent stretches
            f = self.files[self.rng.choice(len(self.files), p=self.p)]
            start = self.rng.uniform(0, max(0.0, f.duration - self.seconds))
            try:
                x = load_audio(f.path, self.sr, offset=start, duration=self.seconds)
            except AudioError as e:
                log.warning("skipping segment: %s", e)
                continue
            if x.shape[0] < n:
                x = np.pad(x, (0, n - x.shape[0]))
            x = x[:n]
            if np.sqrt(np.mean(x**2)) > 1e-3:
                return x
        return x

    def batch(self, size: int) -> np.ndarray:
        """[size, samples] float32."""
        return np.stack([self.segment() for _ in range(size)])

    def state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def fixed_clips(
    files: list[AudioInfo], sr: int, seconds: float, limit: int
) -> list[tuple[Path, np.ndarray]]:
    """Deterministic clips: ``seconds`` from the middle of each of up to ``limit`` files."""
    clips = []
    for f in files[:limit]:
        start = max(0.0, f.duration / 2 - seconds / 2)
        try:
            clips.append((f.path, load_audio(f.path, sr, offset=start, duration=seconds)))
        except AudioError as e:
            log.warning("skipping validation file: %s", e)
    return clips
