"""Semantic tokenizer: k-means, features, both iterations, agreement between renders."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SR, tone
from typer.testing import CliRunner

from aimusic.audio import save_audio
from aimusic.cli import app
from aimusic.cluster import kmeans, minibatch_kmeans, nearest
from aimusic.errors import ArtifactError, ConfigError
from aimusic.semantic.evaluate import agreement, nmi, pairs
from aimusic.semantic.features import handmade, log_mel, onset_flags
from aimusic.semantic.model import PRESETS, SemanticConfig, SemanticModel, cmvn, load_semantic
from aimusic.semantic.train import span_mask

runner = CliRunner()


def _blobs(n_per: int = 400, k: int = 6, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    return centers[labels] + torch.randn(k * n_per, dim, generator=g), labels


@pytest.mark.parametrize("fit", ["lloyd", "minibatch"])
def test_kmeans_recovers_synthetic_clusters(fit) -> None:
    x, labels = _blobs()
    g = torch.Generator().manual_seed(1)
    c = kmeans(x, 6, generator=g) if fit == "lloyd" else minibatch_kmeans(
        x, 6, steps=50, batch=256, init_points=1000, generator=g)
    assert nmi(nearest(x, c).numpy(), labels.numpy()) > 0.99


def test_minibatch_kmeans_uses_every_centroid_and_needs_k_points() -> None:
    x, _ = _blobs(n_per=50, k=2)
    c = minibatch_kmeans(x, 40, steps=20, batch=64, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(c).all() and len(set(nearest(x, c).tolist())) > 30
    with pytest.raises(ValueError, match="at least k"):
        minibatch_kmeans(x[:10], 40)


def test_nmi_properties() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 8, 5000)
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 3) % 8) == pytest.approx(1.0)  # renaming labels changes nothing
    assert nmi(a, rng.integers(0, 8, 5000)) < 0.01


def test_features_align_with_codec_frames_and_chroma_finds_the_pitch_class() -> None:
    x = torch.from_numpy(tone(440.0, 2.0))[None]
    f = handmade(x, SR, 960)
    assert f.shape == (1, 2 * SR // 960, 3 * 13 + 12)
    assert int(f[0, 10, -12:].argmax()) == 9  # A, counting from C
    c = torch.from_numpy(tone(261.63, 2.0))[None]
    assert int(handmade(c, SR, 960)[0, 10, -12:].argmax()) == 0  # C
    assert log_mel(x[:, :12345], SR, 960).shape == (1, 12345 // 960, 4 * 80)


def test_cmvn_removes_the_channel_and_keeps_the_motion() -> None:
    """cmvn: each input's MFCCs come out at zero mean and unit deviation, so a gain or a
    fixed tilt (what a voice or a microphone adds to every frame) leaves them unchanged,
    while a change of sound within the input still shows; the other columns are kept."""
    rng = np.random.default_rng(0)
    a, b = tone(300.0, 1.0), tone(1200.0, 1.0)
    x = torch.from_numpy(np.concatenate([a, b]) + rng.normal(0, 1e-2, 2 * len(a)).astype(np.float32))[None]
    f = handmade(x, SR, 960)
    g = cmvn(f, 13)
    assert torch.allclose(g[..., :13].mean(1), torch.zeros(13), atol=1e-4)
    assert torch.allclose(g[..., :13].std(1), torch.ones(13), atol=1e-3)
    assert torch.equal(g[..., 13:], f[..., 13:])
    raw_quiet = handmade(0.05 * x, SR, 960)
    assert float((raw_quiet[..., :13] - f[..., :13]).abs().max()) > 5.0
    quiet = cmvn(raw_quiet, 13)
    assert float((quiet[..., :13] - g[..., :13]).abs().max()) < 0.05  # up to the log floor
    n = g.shape[1]  # the two tones differ in the normalized MFCCs
    assert float((g[0, : n // 2 - 2, :13].mean(0) - g[0, n // 2 + 2:, :13].mean(0)).norm()) > 1.0
    model = SemanticModel(SemanticConfig(sample_rate=SR, cmvn=True, chroma_weight=0.0))
    r = model.raw_features(x)  # a model that gives chroma no weight does not compute it
    assert torch.equal(r[..., :-12], g[..., :-12]) and not r[..., -12:].any()
    assert torch.equal(r, cmvn(handmade(x, SR, 960, chroma=False), 13))


def test_speech_preset_tokens_ignore_gain_and_pitch_class() -> None:
    """The `speech` preset: its chroma block weighs nothing, ``deltas`` sets the columns,
    and its tokens stay the same when the input is 26 dB quieter, where the music preset's
    (no normalization) change."""
    cfg = PRESETS["speech"]()
    assert cfg.cmvn and cfg.chroma_weight == 0.0 and cfg.iteration == 1
    rng = np.random.default_rng(0)
    x = np.concatenate([tone(f, 0.5) for f in (220.0, 660.0, 330.0, 990.0)])
    x = (x + rng.normal(0, 0.01, len(x))).astype(np.float32)
    tokens = {}
    for name, c in (("speech", cfg), ("small", PRESETS["small"]())):
        model = SemanticModel(replace(c, sample_rate=SR, iteration=1))
        f = model.raw_features(torch.from_numpy(x)[None])[0]
        model.feat_mean.copy_(f.mean(0))
        model.feat_std.copy_(f.std(0).clamp_min(1e-5))
        model.centroids.copy_(torch.from_numpy(rng.normal(size=tuple(model.centroids.shape))).float())
        tokens[name] = (model.tokens(x), model.tokens(0.05 * x))
        if name == "speech":
            assert torch.all(model.standardize(f)[:, -12:] == 0)
    loud, quiet = tokens["speech"]
    assert np.mean(loud == quiet) > 0.9
    loud, quiet = tokens["small"]
    assert np.mean(loud == quiet) < 0.5
    assert SemanticModel(SemanticConfig(sample_rate=SR, deltas=1)).raw_features(
        torch.from_numpy(x)[None]).shape[-1] == 2 * 13 + 12
    with pytest.raises(ConfigError, match="deltas"):
        SemanticModel(SemanticConfig(deltas=3))


def test_sub_frames_put_finer_mfcc_frames_side_by_side() -> None:
    """``sub_frames: s``: each token holds s MFCC frames (with their deltas) at hop / s,
    normalized per input as one sequence; the zero chroma block stays last."""
    cfg = replace(PRESETS["speech"](), sample_rate=SR, sub_frames=4)
    x = np.concatenate([tone(f, 0.3) for f in (220.0, 660.0, 330.0)])
    x = (x + np.random.default_rng(0).normal(0, 0.01, len(x))).astype(np.float32)
    f = SemanticModel(cfg).raw_features(torch.from_numpy(x)[None])
    assert f.shape == (1, x.size // cfg.hop, 4 * 3 * 13 + 12)
    fine = cmvn(handmade(torch.from_numpy(x)[None], SR, cfg.hop // 4, 13, mfcc_fft=1024,
                         chroma=False), 13)
    # token 5's second frame is frame 21 at a quarter of the hop
    assert torch.allclose(f[0, 5, 39:78], fine[0, 21, :39])
    assert torch.all(f[..., -12:] == 0)
    with pytest.raises(ConfigError, match="chroma"):  # chroma is one block a token
        SemanticModel(replace(PRESETS["small"](), sub_frames=4))
    with pytest.raises(ConfigError, match="divide"):
        SemanticModel(replace(cfg, sub_frames=7))


def test_span_mask_covers_spans_and_every_row() -> None:
    m = span_mask(16, 100, 0.05, 5, torch.Generator().manual_seed(0))
    assert m.shape == (16, 100) and m.any(1).all()
    assert 0.1 < m.float().mean() < 0.5


def test_iteration2_windows_match_a_whole_pass_inside_the_context() -> None:
    cfg = SemanticConfig(iteration=2, clusters=4, dim=16, layers=2, heads=2, layer=1, window=20,
                         context=10)
    m = SemanticModel(cfg).eval()
    x = torch.randn(1, 960 * 30)
    with torch.no_grad():
        mel = log_mel(x, SR, 960)
        whole = m.encoder(mel, upto=1)
        win = m.raw_features(x)
    assert win.shape == whole.shape
    # one attention layer: every token sees at least `context` neighbours in both windows,
    # but attention is global within a window, so only check the first window's tokens,
    # whose window [0, 30) is the whole input
    torch.testing.assert_close(win[:, :20], whole[:, :20])
    assert m.tokens(np.zeros(500, np.float32)).shape == (0,)


def _render(notes: list[int], timbre: str, note_s: float = 0.3) -> np.ndarray:
    """The same notes in two timbres: plucked (decaying, few harmonics) or bowed
    (sustained, many harmonics, vibrato)."""
    n = int(note_s * SR)
    t = np.arange(n) / SR
    out = []
    for midi in notes:
        f = 440 * 2 ** ((midi - 69) / 12)
        if timbre == "plucked":
            y = np.exp(-6 * t) * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
        else:
            ph = 2 * np.pi * f * t + 0.3 * np.sin(2 * np.pi * 5 * t)
            y = np.minimum(1, t * 20) * sum(0.5 / h * np.sin(h * ph) for h in range(1, 8))
        out.append(0.3 * y)
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def two_renders(tmp_path_factory) -> Path:
    """Training audio in both timbres, and pairs a/ b/ of the same melodies."""
    root = tmp_path_factory.mktemp("renders")
    rng = np.random.default_rng(0)
    for i in range(6):
        notes = list(rng.integers(57, 81, 16))
        save_audio(root / "train" / f"p{i}.wav", _render(notes, "plucked"), SR)
        save_audio(root / "train" / f"b{i}.wav", _render(list(rng.integers(57, 81, 16)), "bowed"), SR)
    for i in range(3):
        notes = list(rng.integers(57, 81, 16))
        save_audio(root / "pairs" / "a" / f"m{i}.wav", _render(notes, "plucked"), SR)
        save_audio(root / "pairs" / "b" / f"m{i}.wav", _render(notes, "bowed"), SR)
    return root


def test_train_semantic_both_iterations_via_cli(two_renders, tmp_path) -> None:
    out = tmp_path / "sem.safetensors"
    val = tmp_path / "val"  # files shorter than the 2 s segment, of unequal lengths (speech)
    for k, notes in enumerate(([60, 62, 64], [67, 65, 64, 62])):
        save_audio(val / f"v{k}.wav", _render(notes, "plucked")[:int(SR * (0.8 + 0.4 * k))], SR)
    r = runner.invoke(app, ["train-semantic", str(two_renders / "train"), "-o", str(out),
                            "--preset", "tiny", "--iterations", "2", "--steps", "12",
                            "--val-dir", str(val), "--onsets"])
    assert r.exit_code == 0, r.output
    first = load_semantic(tmp_path / "sem.it1.safetensors")
    second = load_semantic(out)
    assert (first.cfg.iteration, second.cfg.iteration) == (1, 2)
    assert second.cfg.onsets and second.cfg.vocab == 2 * second.cfg.clusters
    r = runner.invoke(app, ["info", str(out), "--json"])
    assert first.source_hash in r.output  # iteration 2 names the model it learned from
    x = np.random.default_rng(0).standard_normal(SR * 3 + 100).astype(np.float32) * 0.1
    for m in (first, second):
        tok = m.tokens(x)
        assert tok.shape == (x.size // 960,) and tok.dtype == np.int64
        assert tok.min() >= 0 and tok.max() < m.cfg.vocab
    r = runner.invoke(app, ["eval", "semantic", str(two_renders / "pairs"), "--semantic",
                            str(tmp_path / "sem.it1.safetensors"), "--semantic", str(out),
                            "--codec", str(tmp_path / "none.safetensors")])
    assert r.exit_code == 1 and "train-codec" in r.output
    # two models of one file name (two chains' semantic.safetensors): a row each
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(out if d == "a" else tmp_path / "sem.it1.safetensors",
                    tmp_path / d / "semantic.safetensors")
    r = runner.invoke(app, ["eval", "semantic", str(two_renders / "pairs"), "--json",
                            "--models", str(tmp_path / "a"),
                            "--semantic", str(tmp_path / "a" / "semantic.safetensors"),
                            "--semantic", str(tmp_path / "b" / "semantic.safetensors")])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)["tokenizers"]) == 2


def test_iteration1_tokens_follow_the_notes_not_the_timbre(two_renders, tmp_path) -> None:
    out = tmp_path / "it1.safetensors"
    r = runner.invoke(app, ["train-semantic", str(two_renders / "train"), "-o", str(out),
                            "--preset", "tiny", "--iterations", "1", "--clusters", "24"])
    assert r.exit_code == 0, r.output
    m = load_semantic(out)
    # k-means' loss, per dimension of the standardized features (each of variance 1): 24
    # centroids explain part of it
    extra = json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)["extra"]
    assert 0 < extra["inertia"] < 1, extra
    found = pairs(two_renders / "pairs")
    r = agreement(found, {"it1": m.tokens})["tokenizers"]["it1"]
    # the same notes in another timbre agree far more than other notes in another timbre
    assert r["nmi"] > r["other"] + 0.15, r
    assert r["nmi"] > r["shifted"] + 0.15, r
    # ... and mostly the very same tokens, not only tokens that map one to one
    assert r["same"] > r["same_other"] + 0.1 and r["same"] > r["same_shifted"] + 0.1, r
    assert 0 <= r["same_other"] < r["same"] <= 1, r


def test_missing_or_foreign_semantic_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="aimusic train-semantic"):
        load_semantic(tmp_path / "none.safetensors")
    from aimusic.artifacts import save_artifact

    p = save_artifact(tmp_path / "codec.safetensors", {"w": torch.zeros(1)}, "codec", 1, {})
    with pytest.raises(ArtifactError, match="codec"):
        load_semantic(p)


def test_onset_flags_mark_struck_notes_at_any_level() -> None:
    """``onset_flags``: a flag within a token of every struck note after the first, few
    others; the same flags 20 dB quieter; none for a held tone or silence."""
    hop = 960
    x = _render([60, 64, 67, 72, 67, 64, 60, 62, 65, 69, 72, 69, 65, 62, 60, 64], "plucked")
    flags = onset_flags(torch.from_numpy(x)[None], SR, hop)[0].numpy()
    assert flags.shape == (x.size // hop,)
    starts = [int(np.floor(k * 0.3 * SR / hop + 0.5)) for k in range(1, 16)]
    assert all(flags[max(0, s - 1):s + 2].any() for s in starts)
    assert 15 <= flags.sum() <= 17
    quiet = onset_flags(torch.from_numpy(0.1 * x)[None], SR, hop)[0].numpy()
    assert np.array_equal(quiet, flags)
    held = _render([64], "bowed", note_s=3.0)
    assert onset_flags(torch.from_numpy(held)[None], SR, hop)[0, 5:].sum() <= 1
    assert not onset_flags(torch.zeros(1, SR), SR, hop).any()


def test_onset_tokens_are_the_clusters_plus_a_struck_flag() -> None:
    """A model with ``onsets``: twice the vocabulary; token % clusters is the plain model's
    token, and the upper half is used exactly where ``onset_flags`` marks a note."""
    rng = np.random.default_rng(0)
    x = _render(list(rng.integers(57, 81, 12)), "plucked")
    plain = SemanticModel(SemanticConfig(sample_rate=SR, clusters=8))
    f = plain.raw_features(torch.from_numpy(x)[None])[0]
    plain.feat_mean.copy_(f.mean(0))
    plain.feat_std.copy_(f.std(0).clamp_min(1e-5))
    plain.centroids.copy_(plain.standardize(f)[rng.choice(f.shape[0], 8, replace=False)])
    marked = SemanticModel(replace(plain.cfg, onsets=True))
    marked.load_state_dict(plain.state_dict())
    assert (plain.cfg.vocab, marked.cfg.vocab) == (8, 16)
    a, b = plain.tokens(x), marked.tokens(x)
    flags = onset_flags(torch.from_numpy(x)[None], SR, 960)[0].numpy()
    assert np.array_equal(b % 8, a) and np.array_equal(b >= 8, flags) and flags.any()
