import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from aimusic.artifacts import (
    describe,
    load_artifact,
    load_state,
    read_metadata,
    save_artifact,
    save_state,
)
from aimusic.config import build_config, config_from_dict
from aimusic.errors import ArtifactError, ConfigError
from aimusic.fileio import file_hash


def test_model_round_trip_with_config_and_depends(tmp_path: Path) -> None:
    w = torch.randn(3, 4)
    tied = {"emb": w, "out": w}  # shared storage is fine
    p = save_artifact(tmp_path / "m.safetensors", tied, "lm", 1, {"dim": 4},
                      depends={"codec": "abc"})
    art = load_artifact(p, "lm", 1)
    assert torch.equal(art.tensors["emb"], w) and torch.equal(art.tensors["out"], w)
    assert art.config == {"dim": 4} and art.depends == {"codec": "abc"}
    assert art.hash == file_hash(p) and len(art.hash) == 16
    assert read_metadata(p)["created"]
    assert [q.name for q in tmp_path.iterdir()] == ["m.safetensors"]


def test_wrong_kind_and_newer_version_are_refused(tmp_path: Path) -> None:
    p = save_artifact(tmp_path / "c.safetensors", {"x": torch.zeros(1)}, "codec", 2, {})
    with pytest.raises(ArtifactError, match="is a codec file"):
        load_artifact(p, "lm", 5)
    with pytest.raises(ArtifactError, match="newer than this aimusic"):
        load_artifact(p, "codec", 1)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ArtifactError, match="not a safetensors file"):
        load_artifact(tmp_path / "junk.safetensors", "codec", 1)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "none.safetensors", "codec", 1)


def test_training_state_is_safetensors_and_comes_back_exactly(tmp_path: Path) -> None:
    """Tensors (tied ones too), numpy RNG state, big ints, tuples, int-keyed dicts (an
    optimizer's) and nan survive; a pickle planted where the state should be is refused
    without being unpickled."""
    import numpy as np

    w = torch.randn(3, 4)
    opt = torch.optim.AdamW([torch.nn.Parameter(w.clone())], betas=(0.8, 0.99))
    opt.zero_grad()
    opt.param_groups[0]["params"][0].grad = torch.ones(3, 4)
    opt.step()
    state = {"step": 7, "rng": torch.get_rng_state(), "model": {"emb": w, "out": w},
             "opt": opt.state_dict(), "np_rng": np.random.default_rng(3).bit_generator.state,
             "mt": np.random.RandomState(1).get_state(), "nested": {"a": [1, 2.5, "x", None]},
             "loss": float("nan"), "shape": (2, 3)}
    save_state(tmp_path / "s.state.safetensors", state)
    back = load_state(tmp_path / "s.state.safetensors")
    assert back["step"] == 7 and torch.equal(back["rng"], state["rng"])
    assert torch.equal(back["model"]["out"], w) and back["shape"] == (2, 3)
    assert back["np_rng"] == state["np_rng"] and back["nested"] == state["nested"]
    assert back["mt"][0] == "MT19937" and np.array_equal(back["mt"][1], state["mt"][1])
    assert math.isnan(back["loss"])
    again = torch.optim.AdamW([torch.nn.Parameter(w.clone())])
    again.load_state_dict(back["opt"])  # int keys and tuples as the optimizer wrote them
    assert again.state_dict()["param_groups"][0]["betas"] == (0.8, 0.99)
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.state.safetensors")
    with pytest.raises(ArtifactError, match="not a valid training state") as e:
        load_state(tmp_path / "evil.state.safetensors")
    assert "weights_only" not in str(e.value)  # torch's advice to unpickle is not relayed
    (tmp_path / "junk.state.safetensors").write_bytes(b"not a state")
    with pytest.raises(ArtifactError, match="junk.state.safetensors: not a valid training state"):
        load_state(tmp_path / "junk.state.safetensors")
    with pytest.raises(TypeError, match="not Evil"):
        save_state(tmp_path / "x.state.safetensors", {"x": Evil()})


def test_describe_model_and_token_dir(tmp_path: Path) -> None:
    p = save_artifact(tmp_path / "m.safetensors", {"w": torch.zeros(2, 3)}, "codec", 1,
                      {"dim": 3}, depends={"x": "y"})
    d = describe(p)
    assert d["kind"] == "codec" and d["parameters"] == 6 and d["depends"] == {"x": "y"}
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "manifest.json").write_text(json.dumps(
        {"format": "aimusic.tokens/1", "items": [1, 2], "depends": {"codec": "h"}}))
    d = describe(tmp_path / "tokens")
    assert d["kind"] == "tokens" and d["items"] == 2
    for i, codec in enumerate(("h", "other")):  # a shard from another codec: a mixed folder
        save_artifact(tmp_path / "tokens" / f"shard-{i:05d}.safetensors",
                      {"t": torch.zeros(2, dtype=torch.int16)}, "tokens", 1, {},
                      depends={"codec": codec})
    with pytest.raises(ArtifactError, match="shard-00001.safetensors: made with codec other, "
                                            "but the manifest says codec h"):
        describe(tmp_path / "tokens")
    save_state(tmp_path / "m.state.safetensors", {"step": 12, "minutes": 3.5, "model": {}})
    d = describe(tmp_path / "m.state.safetensors")  # a training state says what it is
    assert d["kind"] == "training state" and d["step"] == 12 and d["for"] == str(p)


@dataclass
class Cfg:
    dim: int = 8
    lr: float = 1e-3
    name: str = "x"
    ratios: tuple[int, ...] = field(default=(2, 4))


PRESETS = {"tiny": lambda: Cfg(dim=2), "small": Cfg}


def test_config_override_order_preset_yaml_flags(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("dim: 16\nlr: 1\nratios: [3, 5]\n")
    assert build_config(PRESETS, "tiny").dim == 2
    cfg = build_config(PRESETS, "tiny", y)
    assert (cfg.dim, cfg.lr, cfg.ratios) == (16, 1.0, (3, 5))
    cfg = build_config(PRESETS, "tiny", y, {"dim": 32, "lr": None})
    assert (cfg.dim, cfg.lr) == (32, 1.0)


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("dimm: 16\n")
    with pytest.raises(ConfigError, match=r"unknown Cfg key\(s\) dimm; valid keys: dim, lr"):
        build_config(PRESETS, "small", y)
    with pytest.raises(ConfigError, match="dim must be int"):
        config_from_dict(Cfg, {"dim": "big"})
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        build_config(PRESETS, "huge")


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """``.lm-coarse.tmpPID.safetensors`` of a writer killed mid-save goes on the next save of
    that file; a live writer's, or one touched in the last minute, stays."""
    import os
    import subprocess
    import sys

    from aimusic.fileio import write_json

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    stale = tmp_path / f".m.tmp{dead}.json"
    fresh = tmp_path / f".m.tmp{dead + 100000}.json"  # a pid no system has yet
    live = tmp_path / f".m.tmp{os.getppid()}.json"
    other = tmp_path / f".n.tmp{dead}.json"  # another file's: not ours to touch
    for f in (stale, fresh, live, other):
        f.write_text("{")
    for f in (stale, live, other):
        os.utime(f, (0, 0))
    write_json(tmp_path / "m.json", {"a": 1})
    assert not stale.exists() and fresh.exists() and live.exists() and other.exists()
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
