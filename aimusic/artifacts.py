"""Versioned artifacts: models and codes as ``.safetensors`` with a JSON header.

Every file's ``__metadata__`` carries ``format`` (``aimusic.<kind>/<version>``), the JSON
``config`` that rebuilds it, its creation time, the aimusic version that wrote it and the
content hashes of the artifacts it depends on (``depends``). Loading checks the format
and never uses pickle, so a file from a stranger cannot run code.

Training state (weights, optimizer moments, step, RNG) is a safetensors file too
(``x.state.safetensors``, format ``aimusic.state/1``): its tensors, and the structure
around them as JSON in the metadata. No loader here ever unpickles.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aimusic import __version__
from aimusic.errors import ArtifactError
from aimusic.fileio import atomic_path, file_hash


def format_string(kind: str, version: int) -> str:
    return f"aimusic.{kind}/{version}"


def parse_format(fmt: str) -> tuple[str, int]:
    """``"aimusic.codec/1"`` -> ``("codec", 1)``; ValueError if it is not one of ours."""
    if not fmt.startswith("aimusic.") or "/" not in fmt:
        raise ValueError(fmt)
    kind, _, version = fmt[len("aimusic.") :].partition("/")
    return kind, int(version)


@dataclass
class Artifact:
    """What a model or codes file holds once loaded."""

    path: Path
    kind: str
    version: int
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    depends: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return file_hash(self.path)


def save_artifact(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    kind: str,
    version: int,
    config: dict[str, Any],
    depends: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write tensors and metadata atomically. ``depends`` maps a role to a content hash."""
    from safetensors.torch import save_file

    p = Path(path)
    # safetensors refuses shared storage (tied weights): give each tensor its own copy.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {
        "format": format_string(kind, version),
        "config": json.dumps(config, sort_keys=True),
        "depends": json.dumps(depends or {}, sort_keys=True),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "aimusic_version": __version__,
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    with atomic_path(p) as tmp:
        save_file(flat, str(tmp), metadata=meta)
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded ``__metadata__`` of any aimusic ``.safetensors`` file, tensors not loaded."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise ArtifactError(p, "file not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = f.metadata() or {}
            names = list(f.keys())
            shapes = {k: list(f.get_slice(k).get_shape()) for k in names}
    except Exception as e:  # safetensors raises several types for a bad header
        raise ArtifactError(p, f"not a safetensors file ({e})") from None
    if "format" not in raw:
        raise ArtifactError(p, "a safetensors file without an aimusic format field")
    try:
        kind, version = parse_format(raw["format"])
    except ValueError:
        raise ArtifactError(p, f"unknown format {raw['format']!r}") from None
    return {
        "format": raw["format"],
        "kind": kind,
        "version": version,
        "config": json.loads(raw.get("config", "{}")),
        "depends": json.loads(raw.get("depends", "{}")),
        "extra": json.loads(raw.get("extra", "{}")),
        "created": raw.get("created"),
        "aimusic_version": raw.get("aimusic_version"),
        "shapes": shapes,
    }


def load_artifact(path: str | os.PathLike, kind: str, max_version: int) -> Artifact:
    """Load a file of ``kind``; refuse another kind or a version newer than this code reads."""
    from safetensors.torch import load_file

    p = Path(path)
    meta = read_metadata(p)
    if meta["kind"] != kind:
        raise ArtifactError(p, f"is a {meta['kind']} file ({meta['format']}), expected a {kind}")
    if meta["version"] > max_version:
        raise ArtifactError(
            p,
            f"format {meta['format']} is newer than this aimusic ({__version__}) reads "
            f"(up to {format_string(kind, max_version)}); upgrade aimusic",
        )
    tensors = load_file(str(p))
    return Artifact(
        path=p,
        kind=kind,
        version=meta["version"],
        config=meta["config"],
        tensors=tensors,
        depends=meta["depends"],
        meta=meta,
    )


STATE_FORMAT = "aimusic.state/1"


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON, each tensor (and numpy array) replaced by a reference into
    ``tensors``; tuples and dicts with keys other than strings are tagged so that they come
    back as they went in."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _pack(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_pack(k, tensors), _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a training state holds only tensors and plain data, not {type(obj).__name__}")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy()
    if "__tuple__" in obj:
        return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_unpack(k, tensors): _unpack(v, tensors) for k, v in obj["__items__"]}
    return {k: _unpack(v, tensors) for k, v in obj.items()}


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Training state (tensors, numpy arrays, numbers, strings, nested dicts, lists and
    tuples) as one safetensors file, the structure as JSON in its metadata; atomically.
    Nothing is pickled, so loading it runs no code."""
    p = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": STATE_FORMAT, "state": json.dumps(_pack(state, tensors))}
    with atomic_path(p) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return p


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ArtifactError(p, "no training state to resume from")
    try:
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        state = _unpack(json.loads(meta["state"]), tensors)
    except Exception as e:  # a pickle, another file, a truncated one: never unpickled
        raise ArtifactError(p, f"not a valid training state ({str(e).splitlines()[0][:120]}); "
                               "it will not be loaded") from None
    if not isinstance(state, dict):
        raise ArtifactError(p, "training state is not a dictionary")
    return state


def state_path(model_path: str | os.PathLike) -> Path:
    """Where the training state of ``models/x.safetensors`` lives:
    ``models/x.state.safetensors``."""
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".state.safetensors")


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Everything ``aimusic info`` prints about a model file, codes file or token directory."""
    p = Path(path)
    if p.is_dir():
        manifest = p / "manifest.json"
        if not manifest.exists():
            raise ArtifactError(p, "a directory without manifest.json is not a token directory")
        m = json.loads(manifest.read_text())
        size = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
        want = m.get("depends", {})
        for shard in sorted(p.glob("shard-*.safetensors")):  # one tokenizer for the whole folder
            have = read_metadata(shard)["depends"]
            if have != want:
                raise ArtifactError(shard, f"made with {_models(have)}, but the manifest says "
                                           f"{_models(want)}: the folder mixes two tokenizers; "
                                           "tokenize it again into an empty folder")
        return {
            "path": str(p),
            "kind": m.get("format", "?").removeprefix("aimusic.").split("/")[0],
            "format": m.get("format"),
            "size_bytes": size,
            "created": m.get("created"),
            "depends": m.get("depends", {}),
            "config": {k: v for k, v in m.items() if k not in ("items", "depends", "format")},
            "items": len(m.get("items", [])),
        }
    if p.name.endswith(".state.safetensors"):
        state = load_state(p)
        model = p.with_name(p.name.removesuffix(".state.safetensors") + ".safetensors")
        return {
            "path": str(p),
            "kind": "training state",
            "for": str(model) + ("" if model.exists() else " (missing)"),
            "size_bytes": p.stat().st_size,
            "step": state.get("step"),
            "minutes": state.get("minutes"),
            "holds": sorted(state),
            "resume": "train again with --resume and the same output to continue from it",
        }
    meta = read_metadata(p)
    values = sum(_numel(s) for s in meta["shapes"].values())
    out: dict[str, Any] = {
        "path": str(p),
        "kind": meta["kind"],
        "format": meta["format"],
        "hash": file_hash(p),
        "size_bytes": p.stat().st_size,
        "created": meta["created"],
        "aimusic_version": meta["aimusic_version"],
        "values": values,  # every number stored: weights, buffers, codes
        "config": meta["config"],
        "depends": meta["depends"],
    }
    if meta["kind"] not in ("codes", "tokens"):  # trainable parameters, where counted
        out["parameters"] = meta["extra"].get("parameters", values)
    if meta["extra"]:
        out["extra"] = meta["extra"]
    return out


def _models(depends: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(depends.items())) or "no models"


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
