"""LM training: every stage through the CLI, exact resume, 2-process DDP, non-finite loss,
refusal of tokens from other models, the baselines' arithmetic, splits and windows."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from aimusic.artifacts import read_metadata
from aimusic.cli import app
from aimusic.errors import AimusicError, ArtifactError
from aimusic.fileio import write_json
from aimusic.lm import layouts as L
from aimusic.lm.baselines import StreamCounts, fit
from aimusic.lm.loop import lr_at, plan_steps
from aimusic.lm.model import PRESETS, LMConfig
from aimusic.lm.train import (
    TRAIN_PRESETS,
    split_items,
    stage_config,
    stages_for,
    train_lm,
)
from aimusic.lm.windows import StageData, WindowSampler, tile_windows
from aimusic.tokens import TokenDataset
from aimusic.tokens.shards import FileTokens, TokenSpec, build_manifest, shard_name, write_shard

runner = CliRunner()
CPU = torch.device("cpu")
CLUSTERS, LEVELS, CODES = 16, 8, 64
DEPENDS = {"codec": "c0dec0000000000a", "semantic": "5e3a000000000001"}
# source -> semantic tokens: short items (padded windows) and long ones, a val/ and a test/ item
ITEMS = {"a/one.wav": 90, "a/two.wav": 70, "b/three.wav": 40, "four.wav": 12,
         "val/five.wav": 50, "test/six.wav": 30}


def synthetic(n: int, rng: np.random.Generator) -> FileTokens:
    """A Markov chain of semantic tokens; each level a noisy function of the one below."""
    sem = np.zeros(n, np.int64)
    for t in range(1, n):
        sem[t] = rng.integers(CLUSTERS) if rng.random() < 0.15 else (3 * sem[t - 1] + 1) % CLUSTERS
    frames = 3 * n + 2  # an item holds a frame or two past its last semantic token
    ac = np.zeros((LEVELS, frames), np.int64)
    ac[0] = (4 * np.repeat(sem, 3) + np.tile(np.arange(3), n)).tolist() + [0, 1]
    for k in range(1, LEVELS):
        ac[k] = (5 * ac[k - 1] + k) % CODES
    noise = rng.random(ac.shape) < 0.1
    ac[noise] = rng.integers(0, CODES, int(noise.sum()))
    return FileTokens(sem.astype(np.int16), ac.astype(np.int16), num_samples=960 * n)


def make_tokens(root: Path, depends: dict[str, str] = DEPENDS, seed: int = 0,
                items: dict[str, int] = ITEMS) -> Path:
    """A token directory in the format `aimusic tokenize` writes (two shards)."""
    spec = TokenSpec(depends["codec"], depends["semantic"], 24000, LEVELS, CODES, CLUSTERS,
                     25.0, 75.0, 3, 960, 960)
    rng = np.random.default_rng(seed)
    sources = list(items)
    records = []
    for k, group in enumerate((sources[:3], sources[3:])):
        results: list[FileTokens | str] = [synthetic(items[s], rng) for s in group]
        records.append(write_shard(root / shard_name(k), k, group, results, spec))
    manifest, _ = build_manifest(spec, records, {})
    write_json(root / "manifest.json", manifest)
    return root


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return make_tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def small_cfg(tmp_path_factory) -> Path:
    """A context of 64 tokens: windows of 63 semantic tokens, 6 coarse, 7 fine frames."""
    p = tmp_path_factory.mktemp("cfg") / "lm.yaml"
    p.write_text("model:\n  max_len: 64\ntrain:\n  val_every: 50\n")
    return p


def _cli(*args: str) -> str:
    r = runner.invoke(app, ["--device", "cpu", *args])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def trained(tokens: Path, small_cfg: Path, tmp_path_factory) -> tuple[Path, str]:
    """`aimusic train-lm` with no --stage: semantic, coarse and fine; then the delay stage
    and the acoustic one (AudioLM's acoustic-only ablation, which `all` leaves out)."""
    models = tmp_path_factory.mktemp("models")
    out = _cli("train-lm", str(tokens), "-o", str(models), "--preset", "tiny", "--config",
               str(small_cfg), "--steps", "100")
    assert not (models / "lm-acoustic.safetensors").exists()
    out += _cli("train-lm", str(tokens), "--stage", "delay", "--layout", "delay", "-o",
                str(models), "--preset", "tiny", "--config", str(small_cfg), "--steps", "100")
    out += _cli("train-lm", str(tokens), "--stage", "acoustic", "-o", str(models), "--preset",
                "tiny", "--config", str(small_cfg), "--steps", "100")
    return models, out


def _log(models: Path, stage: str) -> list[dict]:
    text = (models / f"lm-{stage}.log.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine", "delay", "acoustic"])
def test_each_stage_trains_through_the_cli(trained, tokens: Path, stage: str) -> None:
    models, output = trained
    path = models / f"lm-{stage}.safetensors"
    meta = read_metadata(path)
    assert meta["depends"] == TokenDataset(tokens).depends == DEPENDS
    assert meta["config"]["stage"] == stage and meta["config"]["max_len"] == 64
    extra = meta["extra"]
    for key in ("val_ce", "unigram_ce", "bigram_ce", "val_tokens", "tokens_per_s"):
        assert extra[key] > 0, key
    lines = _log(models, stage)
    assert lines[0]["step"] == 0 and lines[-1]["final"] and lines[-1]["step"] == 100
    # validation loss falls, and the trained LM beats the unigram of its targets
    assert lines[-2]["val_ce"] < lines[0]["val_ce"] - 0.3, lines
    assert extra["val_ce"] < extra["unigram_ce"], extra
    assert extra["bigram_ce"] < extra["unigram_ce"]  # the data are Markov chains
    assert f"lm-{stage}: {path}" in output.replace("\n", "")


def test_eval_lm_measures_the_same_tokens(trained, tokens: Path) -> None:
    models, _ = trained
    r = runner.invoke(app, ["-q", "--device", "cpu", "eval", "lm", str(tokens), "--models", str(models),
                            "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert list(result) == ["semantic", "coarse", "fine"]
    for stage, m in result.items():
        extra = read_metadata(models / f"lm-{stage}.safetensors")["extra"]
        for k in ("unigram_ce", "bigram_ce", "val_tokens"):
            assert m[k] == extra[k], (stage, k)
        assert m["val_ce"] == pytest.approx(extra["val_ce"], abs=1e-4)
    # the acoustic LM only when named; its baselines are the coarse stage's (same targets)
    r = runner.invoke(app, ["-q", "--device", "cpu", "eval", "lm", str(tokens), "--stage",
                            "acoustic", "--models", str(models), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)["acoustic"]
    extra = read_metadata(models / "lm-acoustic.safetensors")["extra"]
    assert extra["window"] == 7  # (64 - 1) // 9 semantic tokens' worth of frames
    for k in ("unigram_ce", "bigram_ce", "val_tokens"):
        assert m[k] == extra[k], k
    assert m["val_ce"] == pytest.approx(extra["val_ce"], abs=1e-4) and m["val_ce"] < m["unigram_ce"]


def _configs(stage: str, **train):
    import dataclasses

    model_cfg = dataclasses.replace(PRESETS["tiny"](), max_len=64)
    return model_cfg, dataclasses.replace(TRAIN_PRESETS["tiny"](), **train)


def test_resume_after_a_crash_continues_exactly(tokens: Path, tmp_path: Path, monkeypatch) -> None:
    import aimusic.lm.train as tr

    model_cfg, cfg = _configs("coarse", steps=6, val_every=3)
    ref = train_lm(tokens, tmp_path / "a", ["coarse"], model_cfg, cfg, CPU, show_progress=False)

    save = tr.save_state

    def save_then_crash(path, state):
        save(path, state)
        if state["step"] == 3:
            raise KeyboardInterrupt  # killed right after the checkpoint at step 3

    monkeypatch.setattr(tr, "save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_lm(tokens, tmp_path / "b", ["coarse"], model_cfg, cfg, CPU, show_progress=False)
    monkeypatch.undo()
    got = train_lm(tokens, tmp_path / "b", ["coarse"], model_cfg, cfg, CPU, resume=True,
                   show_progress=False)
    a = load_file(str(tmp_path / "a" / "lm-coarse.safetensors"))
    b = load_file(str(tmp_path / "b" / "lm-coarse.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert got["coarse"]["val_ce"] == ref["coarse"]["val_ce"]
    # a finished stage is not trained again
    again = train_lm(tokens, tmp_path / "b", ["coarse"], model_cfg, cfg, CPU, resume=True,
                     show_progress=False)
    assert again["coarse"]["val_ce"] == ref["coarse"]["val_ce"]
    # ... and a finished run resumed with more steps is extended to them
    more = train_lm(tokens, tmp_path / "b", ["coarse"], model_cfg,
                    dataclasses.replace(cfg, steps=9), CPU, resume=True, show_progress=False)
    assert more["coarse"]["step"] == 9
    assert _log(tmp_path / "b", "coarse")[-1]["final_step"] == 9


def test_two_process_gloo_ddp_matches_one_process(tokens: Path, small_cfg: Path,
                                                  tmp_path: Path) -> None:
    cfg = tmp_path / "fp32.yaml"  # float32: bf16's rounding differs between batch splits
    cfg.write_text(small_cfg.read_text().replace("train:\n", "train:\n  bf16: false\n"))
    args = ["train-lm", str(tokens), "--stage", "semantic", "--preset", "tiny", "--config",
            str(cfg), "--steps", "4", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIMUSIC_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "aimusic", "-q", "--device", "cpu", *args, "-o", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    _cli("-q", *args, "-o", str(tmp_path / "one"))
    a = load_file(str(tmp_path / "ddp" / "lm-semantic.safetensors"))
    b = load_file(str(tmp_path / "one" / "lm-semantic.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
    la, lb = _log(tmp_path / "ddp", "semantic"), _log(tmp_path / "one", "semantic")
    assert la[-1]["val_ce"] == pytest.approx(lb[-1]["val_ce"], abs=1e-4)
    assert la[-2]["train_loss"] == pytest.approx(lb[-2]["train_loss"], abs=1e-4)


def test_a_validation_too_small_to_measure_is_warned_about(tmp_path: Path, caplog) -> None:
    """A held-out split of one semantic token gives a validation figure that is noise: the
    run says so."""
    import logging

    tokens = make_tokens(tmp_path / "t", items={**ITEMS, "val/five.wav": 1})
    model_cfg, cfg = _configs("semantic", steps=1, val_every=1)
    with caplog.at_level(logging.WARNING, logger="aimusic"):
        train_lm(tokens, tmp_path / "m", ["semantic"], model_cfg, cfg, CPU, show_progress=False)
    assert any("validation holds only 1 semantic token" in r.getMessage() for r in caplog.records)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tokens: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    import aimusic.lm.loop as loop

    model_cfg, cfg = _configs("semantic", steps=2, val_every=2)
    train_lm(tokens, tmp_path, ["semantic"], model_cfg, cfg, CPU, show_progress=False)
    good = (tmp_path / "lm-semantic.safetensors").read_bytes()
    monkeypatch.setattr(loop, "next_token_loss", lambda *a: torch.tensor(float("nan")))
    _, cfg4 = _configs("semantic", steps=4, val_every=2)
    with pytest.raises(AimusicError, match="lm-semantic: non-finite loss at step 2.*last checkpoint is kept"):
        train_lm(tokens, tmp_path, ["semantic"], model_cfg, cfg4, CPU, resume=True,
                 show_progress=False)
    assert (tmp_path / "lm-semantic.safetensors").read_bytes() == good


def test_resuming_on_tokens_of_other_models_is_refused(tokens: Path, small_cfg: Path,
                                                       tmp_path: Path) -> None:
    """Tokens of another codec are refused to a stage that reads codec tokens; the semantic
    LM reads semantic tokens alone, so tokens of the same semantic model with another
    codec are its own (and another semantic model's are not)."""
    other = make_tokens(tmp_path / "other", {**DEPENDS, "codec": "0123456789abcdef"})
    base = ["train-lm", "--stage", "coarse", "--preset", "tiny", "--config", str(small_cfg),
            "-o", str(tmp_path / "m")]
    _cli(*base, str(tokens), "--steps", "2")
    r = runner.invoke(app, ["--device", "cpu", *base, str(other), "--steps", "4", "--resume"])
    assert r.exit_code == 1
    msg = r.output.replace("\n", "")
    assert "trained on tokens of other models" in msg and "codec c0dec0000000000a" in msg
    assert "0123456789abcdef" in msg
    r = runner.invoke(app, ["--device", "cpu", "eval", "lm", str(other), "--stage", "coarse",
                            "--models", str(tmp_path / "m")])
    assert r.exit_code == 1 and "trained on tokens of other models" in r.output.replace("\n", "")
    with pytest.raises(ArtifactError, match="made with the codec model"):
        TokenDataset(other, codec_hash=DEPENDS["codec"])

    semantic = [*base[:2], "semantic", *base[3:]]
    _cli(*semantic, str(tokens), "--steps", "2")
    _cli(*semantic, str(other), "--steps", "4", "--resume")
    _cli("eval", "lm", str(other), "--stage", "semantic", "--models", str(tmp_path / "m"))
    third = make_tokens(tmp_path / "third", {**DEPENDS, "semantic": "fedcba9876543210"})
    r = runner.invoke(app, ["--device", "cpu", "eval", "lm", str(third), "--stage", "semantic",
                            "--models", str(tmp_path / "m")])
    assert r.exit_code == 1 and "fedcba9876543210" in r.output.replace("\n", "")


def test_unigram_and_bigram_on_a_hand_made_sequence() -> None:
    c = fit([np.array([0, 1, 0, 1, 0, 2])], vocab=3)
    # unigram, add-one: counts 3, 2, 1 of 6 -> (c + 1) / 9
    np.testing.assert_allclose(c.unigram_nll(np.array([0, 1, 2])),
                               -np.log([4 / 9, 3 / 9, 2 / 9]))
    # bigram, Witten-Bell: after 0: 1 twice, 2 once (c = 3, T = 2); after 1: 0 twice (c = 2, T = 1)
    val = np.array([0, 1])
    bi = c.bigram_nll(val)  # the first token has no previous one: the unigram
    np.testing.assert_allclose(bi, -np.log([4 / 9, (2 + 2 * 3 / 9) / (3 + 2)]))
    np.testing.assert_allclose(c.bigram_nll(np.array([0]), prev=1), -np.log([(2 + 4 / 9) / 3]))
    np.testing.assert_allclose(c.bigram_nll(np.array([1]), prev=2), -np.log([3 / 9]))  # unseen
    for a in range(3):  # each conditional is a distribution
        total = sum(math.exp(-c.bigram_nll(np.array([b]), prev=a)[0]) for b in range(3))
        assert total == pytest.approx(1.0)
    assert np.mean(c.unigram_nll(val)) == pytest.approx(-(math.log(4 / 9) + math.log(3 / 9)) / 2)
    assert isinstance(c, StreamCounts) and int(c.bigram.sum()) == 5


def test_splits_stages_schedule_and_windows(tokens: Path) -> None:
    ds = TokenDataset(tokens)
    train, val = split_items(ds.sources)
    assert [ds.sources[i] for i in val] == ["val/five.wav"]
    assert "test/six.wav" not in [ds.sources[i] for i in train] and len(train) == 4
    names = [f"f{i:03d}.wav" for i in range(100)]
    tr, va = split_items(names)
    assert 1 <= len(va) <= 15 and not set(tr) & set(va) and split_items(names) == (tr, va)
    assert stages_for("all", "flat") == ["semantic", "coarse", "fine"]
    assert stages_for("all", "delay") == ["semantic", "delay"]
    with pytest.raises(AimusicError, match="no coarse stage"):
        stages_for("coarse", "delay")
    assert stages_for("acoustic", "flat") == ["acoustic"]  # an ablation: never part of all
    with pytest.raises(AimusicError, match="no acoustic stage"):
        stages_for("acoustic", "delay")
    with pytest.raises(AimusicError, match="coarse_levels 8 must be 1..7"):
        LMConfig(stage="acoustic", coarse_levels=8).check()
    _, cfg = _configs("semantic", steps=100, warmup=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1) and lr_at(55, cfg) == pytest.approx(0.55)
    # a --minutes budget plans the cosine's end where the time runs out, never past steps
    assert plan_steps(cfg, 10, 10, 5.0) == 100  # no time budget: the steps
    timed = dataclasses.replace(cfg, minutes=1.0, steps=10_000)
    assert plan_steps(timed, 20, 20, 10.0) == 20 + int(0.95 * 2.0 * 50.0)  # 2 steps/s, 50 s left
    assert plan_steps(dataclasses.replace(timed, steps=50), 20, 20, 10.0) == 50
    assert lr_at(115, timed, planned=115) == pytest.approx(0.1)
    # windows fit the context, short items give padded windows, targets are what baselines see
    model_cfg, _ = _configs("fine")
    for stage in ("semantic", "coarse", "fine", "delay", "acoustic"):
        sd = StageData.make(stage_config(model_cfg, stage, ds), ds.frames_per_token)
        units = np.array([sd.units(int(n)) for n in ds.semantic_lengths])
        s = WindowSampler(units, train, sd.n, seed=0)
        wins = [s.draw() for _ in range(20)] + tile_windows(units, val, sd.n)
        ids, mask = sd.batch(ds, wins)
        assert ids.shape[1] == sd.seq_len(sd.n) <= 64
        if stage == "acoustic":  # the coarse layout's targets, with no semantic prefix
            assert sd.target_streams() == [0, 1, 2] and bool((ids[:, 0] == L.SEP).all())
        for b, w in enumerate(wins):
            stretches = list(sd.stream_stretches(ds, w))
            assert int(mask[b, 1:].sum()) == sum(t.size for _, t, _ in stretches)
            assert sd.seq_len(w[2]) == int((ids[b] != L.PAD).any(-1).sum() if ids.dim() == 3
                                           else (ids[b] != L.PAD).sum())
    state = s.state()
    first = [s.draw() for _ in range(5)]
    s.set_state(state)
    assert [s.draw() for _ in range(5)] == first


def test_init_starts_from_a_trained_lm_with_a_fresh_schedule(tokens: Path, tmp_path: Path) -> None:
    """--init: the weights of another models directory's LM (a new machine carrying on from
    kept float16 files), a fresh optimizer and schedule, and its training recorded."""
    model_cfg, cfg = _configs("semantic", steps=4, val_every=2)
    train_lm(tokens, tmp_path / "a", ["semantic"], model_cfg, cfg, CPU, show_progress=False)
    b = train_lm(tokens, tmp_path / "b", ["semantic"], model_cfg, cfg, CPU, show_progress=False,
                 init=tmp_path / "a")
    a_log, b_log = _log(tmp_path / "a", "semantic"), _log(tmp_path / "b", "semantic")
    a_last = [x for x in a_log if "val_ce" in x and not x.get("final")][-1]
    b_first = [x for x in b_log if "val_ce" in x][0]
    assert b_first["step"] == 0 and b_first["val_ce"] == a_last["val_ce"]  # the same weights
    assert b_log[0]["event"] == "start" and b_log[0]["init_steps"] == 4
    extra = read_metadata(tmp_path / "b" / "lm-semantic.safetensors")["extra"]
    assert extra["init_steps"] == 4 and extra["steps"] == 4 and b["semantic"]["step"] == 4
    with pytest.raises(ArtifactError, match="expected the semantic LM|not found"):
        train_lm(tokens, tmp_path / "c", ["coarse"], model_cfg, cfg, CPU, show_progress=False,
                 init=tmp_path / "a")  # no coarse LM there
