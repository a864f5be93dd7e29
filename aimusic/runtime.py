"""Process-wide settings the CLI's global options set: device, seed, verbosity, console."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from aimusic.errors import AimusicError

if TYPE_CHECKING:  # torch is imported where it is used: `aimusic --help` needs none of it
    import torch

console = Console(stderr=True)  # progress, logs, errors
stdout = Console()  # results a script may read
log = logging.getLogger("aimusic")


@dataclass
class Settings:
    device: str = "auto"
    seed: int | None = None
    verbose: bool = False
    quiet: bool = False


settings = Settings()


def resolve_device(name: str | None = None) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    name = name or settings.device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AimusicError("--device cuda asked for, but torch sees no CUDA GPU (try --device cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise AimusicError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run fast here: CUDA, or a CPU with AVX-512 bf16
    (elsewhere a CPU emulates them, slower than float32)."""
    import torch

    if device.type == "cuda":
        return True
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and check is not None and bool(check())


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads() -> None:
    """Respect OMP_NUM_THREADS / AIMUSIC_THREADS; otherwise torch's default (all cores)."""
    n = os.environ.get("AIMUSIC_THREADS")
    if n:
        import torch

        torch.set_num_threads(int(n))


def setup_logging(verbose: bool, quiet: bool) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=console, show_path=False, show_time=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    log.setLevel(level)


def default_models_dir() -> str:
    return os.environ.get("AIMUSIC_MODELS", "models")


def bundled_models_dir(name: str = "music") -> Path:
    """The small trained models that ship inside the package (aimusic/bundled/NAME)."""
    return Path(__file__).resolve().parent / "bundled" / name


_said_bundled: set[str] = set()


def models_to_read(models: str | os.PathLike | None, bundle: str = "music") -> Path:
    """Where to load models from: ``--models``, else $AIMUSIC_MODELS, else ./models; with
    none of these (no ./models folder at all) the bundled models, saying so once.
    ``--models NAME`` names a bundled set (``music``, ``piano``, ``voice``) where no models
    folder NAME (one holding a codec.safetensors) is here: `make piano-pipeline` writes its
    work to ./piano, which must not hide the bundled piano set."""
    if models is not None:
        p = Path(models)
        named = bundled_models_dir(p.name)
        if (not (p / "codec.safetensors").exists() and p.name == str(models)
                and (named / "codec.safetensors").exists()):
            return named
        return p
    chosen = Path(default_models_dir())
    if "AIMUSIC_MODELS" in os.environ or chosen.exists():
        return chosen
    bundled = bundled_models_dir(bundle)
    if not (bundled / "codec.safetensors").exists():
        return chosen  # a source checkout without bundled models: the usual errors follow
    if bundle not in _said_bundled:
        _said_bundled.add(bundle)
        log.info("no ./models: using the %s models bundled with aimusic (%s; see its "
                 "MODEL_CARD.md); --models DIR or $AIMUSIC_MODELS picks others", bundle, bundled)
    return bundled
