"""The on-disk format of a token directory: shards, manifests, errors files, merging parts.

``shard-NNNNN.safetensors`` holds ``semantic`` [tokens] and ``acoustic`` [levels, frames]
(int16) of its files, concatenated, and in its metadata the format, the models' hashes
(``depends``), the settings (``config``), the files it was planned with (``sources``),
where each item lies (``items``) and the files skipped (``errors``): a shard is
self-describing, so a rerun can trust it without its manifest.

Shards are written by our own safetensors writer: the library's writer orders metadata
keys at random, and shards must be byte-identical from run to run.

``manifest.json`` lists every item with its shard and offsets; ``errors.jsonl`` every
skipped file with the reason. A split run writes ``manifest-IIIII-of-NNNNN.json`` and
``errors-IIIII-of-NNNNN.jsonl`` per part; ``merge_parts`` joins them.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimusic import __version__
from aimusic.artifacts import format_string, parse_format
from aimusic.errors import ArtifactError
from aimusic.fileio import atomic_path, write_json

log = logging.getLogger("aimusic")

FORMAT_KIND, FORMAT_VERSION = "tokens", 1
FORMAT = format_string(FORMAT_KIND, FORMAT_VERSION)
MANIFEST, ERRORS = "manifest.json", "errors.jsonl"
_PART_RE = re.compile(r"^manifest-(\d{5})-of-(\d{5})\.json$")


@dataclass(frozen=True)
class TokenSpec:
    """Everything a shard's numbers depend on; a shard made under another spec is redone."""

    codec_hash: str
    semantic_hash: str
    sample_rate: int
    levels: int
    codebook_size: int
    clusters: int
    semantic_rate: float
    acoustic_rate: float
    frames_per_token: int  # acoustic frames per semantic token (3)
    semantic_hop: int  # samples per semantic token (960)
    min_samples: int  # shorter files are skipped as too short

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int16 if max(self.codebook_size, self.clusters) <= 32768 else np.int32)

    def depends(self) -> dict[str, str]:
        return {"codec": self.codec_hash, "semantic": self.semantic_hash}

    def config(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "levels": self.levels,
                "codebook_size": self.codebook_size, "clusters": self.clusters,
                "semantic_rate": self.semantic_rate, "acoustic_rate": self.acoustic_rate,
                "frames_per_token": self.frames_per_token, "semantic_hop": self.semantic_hop,
                "min_samples": self.min_samples, "dtype": self.dtype.name}


@dataclass
class FileTokens:
    """The tokens of one file, as a worker returns them and a shard stores them."""

    semantic: np.ndarray  # [n] tokens at semantic_rate
    acoustic: np.ndarray  # [levels, frames], frames >= frames_per_token * n
    num_samples: int  # at the spec's sample rate


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


_ST_DTYPES = {"int16": "I16", "int32": "I32", "int64": "I64"}


def write_safetensors(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                      metadata: dict[str, str]) -> Path:
    """A safetensors file with a canonical header (sorted keys), atomically.

    Same arrays and metadata give the same bytes, which the library's writer does not
    promise (it orders metadata keys at random).
    """
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in sorted(arrays):
        a = arrays[name]
        header[name] = {"dtype": _ST_DTYPES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the library's writer does
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in sorted(arrays):
            a = arrays[name]
            f.write(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return Path(path)


@dataclass
class ShardRecord:
    """A written shard as the manifest needs it: its items with offsets, and its skipped files."""

    index: int
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def write_shard(path: Path, index: int, sources: list[str], results: list[FileTokens | str],
                spec: TokenSpec) -> ShardRecord:
    """Concatenate the files' tokens into one shard; items record where each lies."""
    rec = ShardRecord(index)
    sem, ac = [], []
    s_off = a_off = 0
    for src, r in zip(sources, results):
        if isinstance(r, str):
            rec.errors.append({"source": src, "reason": r})
            continue
        n, f = r.semantic.size, r.acoustic.shape[1]
        rec.items.append({"source": src, "num_samples": r.num_samples, "semantic_offset": s_off,
                          "semantic_length": n, "acoustic_offset": a_off, "acoustic_length": f})
        sem.append(r.semantic)
        ac.append(r.acoustic)
        s_off, a_off = s_off + n, a_off + f
    arrays = {
        "semantic": np.concatenate(sem) if sem else np.zeros(0, spec.dtype),  # [tokens]
        "acoustic": np.concatenate(ac, axis=1) if ac else np.zeros((spec.levels, 0), spec.dtype),
    }
    meta = {"format": FORMAT, "depends": _dumps(spec.depends()), "config": _dumps(spec.config()),
            "shard": str(index), "sources": _dumps(sources), "items": _dumps(rec.items),
            "errors": _dumps(rec.errors)}
    write_safetensors(path, arrays, meta)
    return rec


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def read_shard_metadata(path: Path) -> dict[str, str] | None:
    """The raw metadata of a shard file, or None when it is missing or unreadable."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a damaged file is made again, never read
        log.warning("%s is unreadable (%s); making it again", path, e)
        return None


def read_done_shard(path: Path, index: int, sources: list[str], spec: TokenSpec) -> ShardRecord | None:
    """The record of an existing shard made from the same files under the same spec, else None."""
    meta = read_shard_metadata(path)
    if meta is None:
        return None
    try:
        same = (meta["format"] == FORMAT and json.loads(meta["depends"]) == spec.depends()
                and json.loads(meta["config"]) == spec.config()
                and json.loads(meta["sources"]) == sources and int(meta["shard"]) == index)
        if same:
            return ShardRecord(index, json.loads(meta["items"]), json.loads(meta["errors"]))
    except (KeyError, ValueError):
        pass
    log.warning("%s was made from other files, models or settings; making it again", path)
    return None


def part_names(part: int, parts: int) -> tuple[str, str]:
    """Manifest and errors file names of a part (the whole dataset when ``parts`` is 1)."""
    if parts == 1:
        return MANIFEST, ERRORS
    return f"manifest-{part:05d}-of-{parts:05d}.json", f"errors-{part:05d}-of-{parts:05d}.jsonl"


def build_manifest(spec: TokenSpec, records: Iterable[ShardRecord], plan: dict[str, Any]
                   ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Manifest of the given shards (in shard order) and their skipped files."""
    items: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for rec in sorted(records, key=lambda r: r.index):
        for it in rec.items:
            items.append({"source": it["source"],
                          "duration": round(it["num_samples"] / spec.sample_rate, 6),
                          "num_samples": it["num_samples"], "shard": rec.index,
                          **{k: it[k] for k in ("semantic_offset", "semantic_length",
                                                "acoustic_offset", "acoustic_length")}})
        errors += rec.errors
    manifest = {
        "format": FORMAT,
        "depends": spec.depends(),
        **spec.config(),
        **plan,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "aimusic_version": __version__,
        "seconds": round(sum(it["num_samples"] for it in items) / spec.sample_rate, 3),
        "semantic_tokens": sum(it["semantic_length"] for it in items),
        "acoustic_frames": sum(it["acoustic_length"] for it in items),
        "errors": len(errors),
        "items": items,
    }
    return manifest, errors


def write_errors(path: Path, errors: list[dict[str, str]]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(e) + "\n" for e in errors))
    return path


def _read_errors(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise ArtifactError(path, "errors file of this part is missing; run the part again")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_SHARED = ("format", "depends", "sample_rate", "levels", "codebook_size", "clusters",
           "semantic_rate", "acoustic_rate", "frames_per_token", "semantic_hop", "min_samples",
           "dtype", "files", "files_per_shard", "num_shards", "plan")


def merge_parts(out_dir: str | os.PathLike, num_parts: int | None = None) -> Path:
    """Join the part manifests of a split run into ``manifest.json`` and ``errors.jsonl``.

    Every part must be present and made from the same plan and models; the joined
    manifest lists items in shard order, as a single run's does.
    """
    d = Path(out_dir)
    found: dict[int, dict[int, Path]] = {}
    for p in d.glob("manifest-*-of-*.json"):
        if m := _PART_RE.match(p.name):
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise ArtifactError(d, "no part manifests (manifest-IIIII-of-NNNNN.json) to merge")
    if num_parts is None:
        if len(found) > 1:
            raise ArtifactError(d, f"part manifests of several splits ({sorted(found)} parts); "
                                   "pass --num-shards or remove the stale ones")
        num_parts = next(iter(found))
    parts = found.get(num_parts, {})
    missing = [i for i in range(num_parts) if i not in parts]
    if missing:
        raise ArtifactError(d, f"part(s) {missing} of {num_parts} are missing; run `aimusic "
                               f"tokenize AUDIO_DIR --num-shards {num_parts} --shard-index I` "
                               "for each before merging")
    manifests = [json.loads(parts[i].read_text()) for i in range(num_parts)]
    first = manifests[0]
    for i, m in enumerate(manifests[1:], 1):
        diff = [k for k in _SHARED if m.get(k) != first.get(k)]
        if diff:
            raise ArtifactError(parts[i], f"does not match {parts[0].name} in {', '.join(diff)}: "
                                          "the parts come from different runs")
    items = sorted((it for m in manifests for it in m["items"]),
                   key=lambda it: (it["shard"], it["semantic_offset"]))
    errors = sorted((e for i in range(num_parts)
                     for e in _read_errors(d / part_names(i, num_parts)[1])),
                    key=lambda e: e["source"])
    merged = {k: first[k] for k in first if k not in ("part", "items")}
    merged.update(parts=num_parts,
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  seconds=round(sum(it["num_samples"] for it in items) / first["sample_rate"], 3),
                  semantic_tokens=sum(it["semantic_length"] for it in items),
                  acoustic_frames=sum(it["acoustic_length"] for it in items),
                  errors=len(errors), items=items)
    write_errors(d / ERRORS, errors)
    return write_json(d / MANIFEST, merged)  # last: the manifest marks a finished dataset


def check_format(fmt: str, where: Path) -> None:
    """Refuse a token directory of another kind or of a newer format than this code reads."""
    try:
        kind, version = parse_format(fmt)
    except ValueError:
        raise ArtifactError(where, f"unknown format {fmt!r}") from None
    if kind != FORMAT_KIND:
        raise ArtifactError(where, f"is a {kind} file ({fmt}), expected tokens")
    if version > FORMAT_VERSION:
        raise ArtifactError(where, f"format {fmt} is newer than this aimusic ({__version__}) "
                                   f"reads (up to {FORMAT}); upgrade aimusic")
