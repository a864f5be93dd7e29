import json
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


def test_training_state_is_loaded_without_pickle_code(tmp_path: Path) -> None:
    state = {"step": 7, "rng": torch.get_rng_state(), "nested": {"a": [1, 2.5, "x"]}}
    save_state(tmp_path / "s.pt", state)
    back = load_state(tmp_path / "s.pt")
    assert back["step"] == 7 and torch.equal(back["rng"], state["rng"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError, match="not a valid training state") as e:
        load_state(tmp_path / "evil.pt")
    assert "weights_only" not in str(e.value)  # torch's advice to unpickle is not relayed
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="junk.pt: not a valid training state"):
        load_state(tmp_path / "junk.pt")


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
    save_state(tmp_path / "m.state.pt", {"step": 12, "minutes": 3.5, "model": {}})
    d = describe(tmp_path / "m.state.pt")  # a training state says what it is
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
