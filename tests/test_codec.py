"""Codec: shapes, causality, RVQ units, streaming, learning on real audio, resume, DDP, CLI."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SR, melody
from typer.testing import CliRunner

from aimusic.audio import load_audio, save_audio
from aimusic.cli import app
from aimusic.codec.model import Codec, load_codec, preset_tiny, save_codec
from aimusic.codec.modules import SpectralDecoder
from aimusic.codec.quantizer import ResidualVQ, VectorQuantizer, ema_update, kmeans, nearest
from aimusic.codec.stream import (
    context_frames,
    decode_stream,
    encode_file,
    encode_stream,
    load_codes,
)
from aimusic.codec.train import (
    SPEC_FLOOR,
    TRAIN_PRESETS,
    fine_spectrum_loss,
    floored,
    learning_rate,
    log_path,
    phase_losses,
    sample_levels,
    spectrum_losses,
    train_codec,
)
from aimusic.dsp import mel_distance
from aimusic.errors import AimusicError, ArtifactError

CPU = torch.device("cpu")


def tiny_train(**kw):
    return dataclasses.replace(TRAIN_PRESETS["tiny"](), **kw)


@pytest.mark.parametrize("head", ["conv", "stft-istft", "stft-istft-if"])
@pytest.mark.parametrize("length", [1, 319, 320, 4801, 24000 + 77])
def test_shapes_and_round_trip_at_random_lengths(length: int, head: str) -> None:
    torch.manual_seed(length)
    codec = Codec(HEADS[head]()).eval()
    x = torch.randn(2, 1, length) * 0.1
    codes = codec.encode(x)
    frames = -(-length // codec.cfg.hop)
    assert codes.shape == (2, 8, frames) and codes.dtype == torch.long
    assert int(codes.max()) < codec.cfg.codebook_size
    assert codec.decode(codes).shape == (2, 1, frames * codec.cfg.hop)
    assert codec.encode(x, 2).shape == (2, 2, frames)
    codec.train()
    y, c, commit = codec(x)
    assert y.shape == x.shape and c.shape == (2, 8, frames) and commit.ndim == 0


def test_causal_codec_output_never_depends_on_later_input() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset_tiny(), causal=True)
    codec = Codec(cfg).eval()
    hop = cfg.hop
    x = torch.randn(1, 1, 40 * hop) * 0.1
    z_ref, y_ref = codec.encoder(x), codec.decoder(codec.encoder(x))
    for cut in (7 * hop, 20 * hop, 33 * hop):
        x2 = x.clone()
        x2[..., cut:] = torch.randn_like(x2[..., cut:])
        z2 = codec.encoder(x2)
        # frames ending at or before the cut are identical; encoder latency is one frame
        torch.testing.assert_close(z2[..., : cut // hop], z_ref[..., : cut // hop])
        assert not torch.allclose(z2[..., cut // hop :], z_ref[..., cut // hop :])
        y2 = codec.decoder(z2)
        torch.testing.assert_close(y2[..., :cut], y_ref[..., :cut])
    noncausal = Codec(preset_tiny()).eval()
    x2 = x.clone()
    x2[..., 20 * hop :] += 1.0
    assert not torch.allclose(noncausal.encoder(x2)[..., 19], noncausal.encoder(x)[..., 19])


def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    found = kmeans(x, 3, generator=g)
    for c in centers:
        assert (found - c).norm(dim=1).min() < 0.2
    assert kmeans(x[:2], 5, generator=g).shape == (5, 2)  # fewer points than codes


def test_ema_update_moves_codes_to_batch_means() -> None:
    cluster = torch.ones(2)
    embed_sum = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    counts = torch.tensor([2.0, 0.0])
    sums = torch.tensor([[4.0, 2.0], [0.0, 0.0]])
    new = ema_update(cluster, embed_sum, counts, sums, decay=0.0)
    torch.testing.assert_close(new[0], torch.tensor([2.0, 1.0]), atol=1e-4, rtol=0)
    assert cluster.tolist() == [2.0, 0.0]


def test_vq_init_update_and_dead_code_replacement() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=4, size=8, codebook_dim=4, decay=0.5, dead_after=3)
    x = torch.randn(64, 4) + 5.0
    vq.track_center(x)
    torch.testing.assert_close(vq.center, x.mean(0))
    xn = vq.project(x).detach()
    vq.init_from(xn)
    assert bool(vq.initted)
    torch.testing.assert_close(vq.lookup(xn), nearest(xn, vq.embed))
    far = torch.full((16, 4), 100.0)
    vq.unused[:3] = 2  # three codes nobody chose for two batches: one more makes them dead
    before = vq.embed.clone()
    vq.update(far, vq.lookup(far))
    # the dead codes restarted at batch vectors: now one sits exactly on `far`
    assert (vq.embed - far[0]).norm(dim=1).min() < 1e-5
    assert not torch.allclose(before, vq.embed)


def test_residual_levels_reduce_error_and_dropout_masks_levels() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, levels=4, size=16, codebook_dim=4).train()
    z = torch.randn(4, 8, 64)
    opt = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    for _ in range(60):  # the projections learn to reconstruct through the codes
        q, _, commit = rvq(z)
        loss = (q - z).pow(2).mean() + commit
        opt.zero_grad()
        loss.backward()
        opt.step()
    rvq.eval()
    errs = [(rvq.decode(rvq.encode(z, n)) - z).pow(2).mean().item() for n in (1, 2, 3, 4)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.6 * errs[0], errs
    q, codes, _ = rvq(z, torch.tensor([1, 4, 4, 4]))
    torch.testing.assert_close(q[0], rvq.vq(0).decode(codes[0, 0]).t())
    torch.testing.assert_close(rvq.decode(codes[:1, :1]), q[:1], atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    n = sample_levels(1000, 8, 0.5, g)
    assert 0.45 < (n == 8).float().mean() < 0.62 and int(n.min()) == 1


def test_plain_lookups_have_no_projections_and_every_level_shrinks_the_residual() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, levels=4, size=32, codebook_dim=8).train()
    assert not list(rvq.parameters())  # codebooks learn by EMA; nothing for an optimizer
    z = torch.randn(4, 8, 64) + 3.0  # an offset the running centers must remove
    for _ in range(20):  # k-means init and EMA updates only, no gradient step
        rvq(z)
    rvq.eval()
    errs = [(rvq.decode(rvq.encode(z, n)) - z).pow(2).mean().item() for n in (1, 2, 3, 4)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.5 * errs[0] < 0.5 * z.var().item(), errs


def tiny_istft():
    """The tiny codec with the inverse-STFT decoder of the speech preset."""
    return dataclasses.replace(preset_tiny(), head="istft", head_channels=32, head_dilations=(1, 3))


HEADS = {"conv": preset_tiny, "istft": tiny_istft,
         "istft-bin-phase": lambda: dataclasses.replace(tiny_istft(), head_bin_phase=True),
         # the speech preset's kind: STFT frames in, inverse STFT out
         "stft-istft": lambda: dataclasses.replace(tiny_istft(), encoder="stft"),
         # the music preset's kind: the same with each bin's frequency, phase accumulated
         "stft-istft-if": lambda: dataclasses.replace(tiny_istft(), encoder="stft",
                                                      head_if=True)}


@pytest.mark.parametrize("head", HEADS)
def test_chunked_streaming_equals_whole_file(head: str) -> None:
    torch.manual_seed(1)
    codec = Codec(HEADS[head]()).eval()
    x = torch.randn(1, 1, SR * 4 + 123) * 0.2
    whole = codec.encode(x)[0]
    blocks = iter([x[0, 0, i : i + 5000].numpy() for i in range(0, x.shape[-1], 5000)])
    codes, n = encode_stream(codec, blocks, 8, chunk_frames=3 * context_frames(codec))
    assert n == x.shape[-1] and torch.equal(codes, whole)
    y = np.concatenate(list(decode_stream(codec, whole, chunk_frames=37)))
    np.testing.assert_allclose(y, codec.decode(whole[None])[0, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("head", ["conv", "istft", "stft-istft"])
def test_tiny_codec_learns_a_real_clip(real_clip: Path, tmp_path: Path, head: str) -> None:
    """Overfit three seconds of recorded music: mel distance falls by a large factor."""
    clip = load_audio(real_clip, SR)
    torch.manual_seed(0)
    before = Codec(HEADS[head]()).eval()
    d0 = mel_distance(clip, before.decode(before.encode(torch.from_numpy(clip)[None, None]))[
        0, 0, : clip.size], SR)
    cfg = tiny_train(steps=120, lr=2e-3, adv_start=10**9, val_every=120, val_seconds=3.0,
                     segment_seconds=1.0, batch_size=4)
    m = train_codec(real_clip.parent, tmp_path / "c.safetensors", HEADS[head](), cfg, CPU,
                    val_dir=real_clip.parent, show_progress=False)
    assert m["mel_distance"] < d0 / 2, (d0, m)
    assert np.mean(m["code_usage"]) > 0.5


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("head", ["conv", "stft-istft"])
def test_resume_continues_exactly(synth_dir: Path, tmp_path: Path, head: str) -> None:
    """Two runs (the second ``--resume``d) give the bytes one run of the same steps gives,
    discriminator, spectrum losses and bf16 autocast included."""
    cfg = tiny_train(steps=6, adv_start=2, spec_start=1, val_every=3)
    train_codec(synth_dir, tmp_path / "a.safetensors", HEADS[head](), cfg, CPU,
                show_progress=False)
    train_codec(synth_dir, tmp_path / "b.safetensors", HEADS[head](),
                dataclasses.replace(cfg, steps=3), CPU, show_progress=False)
    train_codec(synth_dir, tmp_path / "b.safetensors", HEADS[head](), cfg, CPU, resume=True,
                show_progress=False)
    a, b = _weights(tmp_path / "a.safetensors"), _weights(tmp_path / "b.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_spectrum_losses_vanish_for_the_target_itself_and_not_for_a_wrong_phase() -> None:
    """The istft head's losses: zero when its STFT is the target's own, and each one grows
    when the phase is wrong (a random phase, or a steady tone with too slow an advance)."""
    n_fft, hop = 1280, 320
    t = torch.arange(hop * 40) / SR
    x = (0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.1 * torch.sin(2 * torch.pi * 660.0 * t)
         + 0.01 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0)))[None, None]
    S = torch.stft(x[:, 0], n_fft, hop, n_fft, torch.hann_window(n_fft), center=True,
                   return_complex=True)[..., :40]
    head = SpectralDecoder(8, 8, hop, (1,))
    assert torch.allclose(head.analyze(x, 40), S)
    assert torch.allclose(head.analyze(x[..., :-100], 40)[..., :38], S[..., :38], atol=1e-5)
    exact = spectrum_losses(x, S.abs().clamp_min(1e-9).log(), torch.angle(S), head)
    assert all(float(v) < 1e-4 for v in exact.values()), exact
    noise = torch.rand(S.shape, generator=torch.Generator().manual_seed(1)) * 2 * torch.pi
    wrong = phase_losses(noise, S)
    assert all(float(v) > 0.5 for v in wrong.values()), wrong
    frozen = torch.angle(S[..., :1]).expand_as(S)  # right in frame 0, then never advancing
    assert float(phase_losses(frozen, S)["phase/iaf"]) > 0.3
    offset = torch.angle(S) + noise[..., :1]  # advancing rightly from a wrong start
    shifted = phase_losses(offset, S)
    assert float(shifted["phase/iaf"]) < 1e-4 and float(shifted["phase/ip"]) > 0.5, shifted
    louder = spectrum_losses(x, S.abs().clamp_min(1e-9).log() + 0.5, torch.angle(S), head)
    assert float(louder["spec/mag"]) > 0.5
    # bins far below the floor where the target is above it are still pulled up
    dead = (S.abs().clamp_min(1e-9).log() - 10.0).requires_grad_(True)
    spectrum_losses(x, dead, torch.angle(S), head)["spec/mag"].backward()
    audible = S.abs() > 10 * SPEC_FLOOR
    assert bool(audible.any()) and bool((dead.grad[audible] < 0).all())


def test_the_fine_spectrum_loss_tells_a_semitone_apart_where_the_heads_window_barely_does() -> None:
    """At 4096 points a low note drawn a semitone off (110 Hz against 116.5 Hz) costs
    several times what a 10% change of level does; at the istft head's own 1280 points
    it costs not much more than that level change. Zero for the target itself."""
    t = torch.arange(SR) / SR
    a = (0.3 * torch.sin(2 * torch.pi * 110.0 * t))[None, None]
    b = (0.3 * torch.sin(2 * torch.pi * 110.0 * 2 ** (1 / 12) * t))[None, None]
    assert float(fine_spectrum_loss(a, a, 4096)) < 1e-6
    level = float(fine_spectrum_loss(a, 0.9 * a, 4096))
    assert float(fine_spectrum_loss(a, b, 4096)) > 6 * level
    assert float(fine_spectrum_loss(a, b, 1280)) < 4 * level
    est = b.clone().requires_grad_(True)
    fine_spectrum_loss(a, est, 4096).backward()
    assert est.grad is not None and bool(torch.isfinite(est.grad).all()) and float(est.grad.abs().sum()) > 0


def test_floored_keeps_the_gradient_below_the_floor() -> None:
    """Its value is clamp_min's; its gradient is the identity's, so an L1 against a target
    above the floor pulls a far lower estimate up, and one against a floored target is 0."""
    est = torch.tensor([-12.0, -12.0, 1.0], requires_grad=True)
    target = torch.tensor([-3.0, -20.0, 0.0]).clamp_min(-4.6)
    out = floored(est, -4.6)
    assert torch.equal(out, est.detach().clamp_min(-4.6))
    (out - target).abs().sum().backward()
    assert est.grad.tolist() == [-1.0, 0.0, 1.0]


def test_init_takes_a_saved_codec_and_trains_on(synth_dir: Path, tmp_path: Path) -> None:
    """``--init``: the folded weights of a saved codec enter a weight-normed one unchanged
    (same decoding), and a run started from it records where it started."""
    src = tmp_path / "src.safetensors"
    train_codec(synth_dir, src, HEADS["istft"](), tiny_train(steps=2, val_every=2), CPU,
                show_progress=False)
    saved = load_codec(src)
    fresh = Codec(saved.cfg)
    fresh.init_from(saved, per_code=2.0)
    fresh.eval()
    codes = torch.randint(0, saved.cfg.codebook_size, (1, saved.cfg.levels, 12))
    torch.testing.assert_close(fresh.decode(codes), saved.decode(codes), atol=1e-5, rtol=1e-4)
    with pytest.raises(AimusicError, match="architecture differs"):
        Codec(preset_tiny()).init_from(saved, per_code=2.0)
    out = tmp_path / "on.safetensors"
    m = train_codec(synth_dir, out, preset_tiny(), tiny_train(steps=4, val_every=2), CPU,
                    show_progress=False, init=src)
    assert np.isfinite(m["mel_distance"])
    from aimusic.artifacts import read_metadata

    meta = read_metadata(out)
    assert meta["config"]["head"] == "istft"  # the init file's architecture, not the preset's
    assert meta["extra"]["init"]["hash"] == saved.source_hash
    # the schedule carries on: steps count from the init file's, and its log comes first
    assert meta["extra"]["steps"] == 4 and meta["extra"]["minutes"] >= 0
    lines = [json.loads(x) for x in log_path(out).read_text().splitlines()]
    starts = [x for x in lines if x.get("event") == "start"]
    assert [(x["run"], x["step"], x["from"]) for x in starts] == [
        (1, 0, "scratch"), (2, 2, f"init {saved.source_hash}")]
    steps = [(x["run"], x["step"]) for x in lines if "event" not in x]
    assert steps == [(1, 2), (2, 4)]
    assert all("train" in x and "mel/loss" in x["train"] and "lr" in x for x in lines
               if "event" not in x)


def test_init_from_a_float16_file_trains_on(synth_dir: Path, tmp_path: Path) -> None:
    """A codec kept in float16 without its optimizer (how trained codecs are kept in the
    repository) starts a run as its float32 original does: the same decoding to float16
    precision, and training goes on from it."""
    src = tmp_path / "src.safetensors"
    train_codec(synth_dir, src, preset_tiny(), tiny_train(steps=3, val_every=3), CPU,
                show_progress=False)
    half = tmp_path / "half.safetensors"
    save_codec(load_codec(src), half, extra={"steps": 3, "minutes": 0.5}, dtype=torch.float16)
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(half)).values() if v.is_floating_point()} == {
        torch.float16}
    a, b = load_codec(src), load_codec(half)
    codes = torch.randint(0, a.cfg.codebook_size, (1, a.cfg.levels, 10))
    torch.testing.assert_close(b.decode(codes), a.decode(codes), atol=2e-3, rtol=1e-2)
    out = tmp_path / "on.safetensors"
    m = train_codec(synth_dir, out, preset_tiny(), tiny_train(steps=6, val_every=3), CPU,
                    show_progress=False, init=half)
    assert np.isfinite(m["mel_distance"]) and m["step"] == 6


def test_learning_rate_warms_up_then_halves_per_half_life() -> None:
    assert learning_rate(1.0, 0, 0, 10, 100) == pytest.approx(0.1 * 0.5 ** 0.0)
    assert learning_rate(1.0, 9, 0, 10, 100) == pytest.approx(0.5 ** 0.09)
    assert learning_rate(1.0, 100, 0, 10, 100) == pytest.approx(0.5)
    # a fresh optimizer at step 100 (--init) warms up again, on the schedule's decay
    assert learning_rate(2.0, 100, 100, 10, 100) == pytest.approx(2.0 * 0.1 * 0.5)
    assert learning_rate(1.0, 50, 0, 0, 0) == 1.0


def test_decoder_only_keeps_the_tokens_and_their_hash(synth_dir: Path, tmp_path: Path) -> None:
    """``--decoder-only``: the decoder learns, the encoder and codebooks do not, so the new
    file encodes to the same codes and names the first codec's tokens as its own: codes
    files and LMs made with the first codec are accepted by the second."""
    src = tmp_path / "src.safetensors"
    train_codec(synth_dir, src, preset_tiny(), tiny_train(steps=3, val_every=3), CPU,
                show_progress=False)
    with pytest.raises(AimusicError, match="needs --init"):
        train_codec(synth_dir, tmp_path / "x.safetensors", preset_tiny(),
                    tiny_train(steps=1, decoder_only=True), CPU, show_progress=False)
    out = tmp_path / "dec.safetensors"
    fine = tmp_path / "fine.yaml"  # with the fine-resolution magnitude loss, as the music codec's
    fine.write_text("train:\n  w_fine: 1.0\n  fine_fft: 1024\n")
    r = CliRunner().invoke(app, ["train-codec", str(synth_dir), "--preset", "tiny", "--steps", "6",
                                 "--init", str(src), "--decoder-only", "--config", str(fine),
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    logged = [json.loads(x) for x in log_path(out).read_text().splitlines()]
    assert any("spec/fine" in x.get("train", {}) for x in logged)
    first, second = load_codec(src), load_codec(out)
    assert second.source_hash != first.source_hash
    assert second.tokens_hash == first.source_hash
    x = torch.from_numpy(melody(1.0))[None, None]
    codes = first.encode(x)
    assert torch.equal(second.encode(x), codes)
    assert not torch.allclose(second.decode(codes), first.decode(codes))  # the decoder learnt
    wav = tmp_path / "a.wav"
    save_audio(wav, x[0, 0].numpy(), SR)
    codes_file = encode_file(first, wav, tmp_path / "a.codes.safetensors")
    assert torch.equal(load_codes(codes_file, second)[0], load_codes(codes_file, first)[0])
    # resumed, the run keeps its own config (decoder only) and the first codec's tokens
    train_codec(synth_dir, out, preset_tiny(), tiny_train(steps=8, val_every=8), CPU,
                show_progress=False, resume=True)
    third = load_codec(out)
    assert third.source_hash != second.source_hash and third.tokens_hash == first.source_hash
    assert torch.equal(third.encode(x), codes)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(synth_dir, tmp_path, monkeypatch):
    import aimusic.codec.train as tr

    out = tmp_path / "c.safetensors"
    train_codec(synth_dir, out, preset_tiny(), tiny_train(steps=2, val_every=2), CPU,
                show_progress=False)
    good = out.read_bytes()
    monkeypatch.setattr(tr, "multiscale_mel_loss", lambda *a: torch.tensor(float("nan")))
    with pytest.raises(AimusicError, match="non-finite loss at step 2.*last good checkpoint"):
        train_codec(synth_dir, out, preset_tiny(), tiny_train(steps=4, val_every=2), CPU,
                    resume=True, show_progress=False)
    assert out.read_bytes() == good


def test_two_process_gloo_ddp_run(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIMUSIC_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "aimusic", "-q", "--device", "cpu", "train-codec", str(synth_dir), "--preset",
         "tiny", "--steps", "4", "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert load_codec(out).cfg == preset_tiny()


runner = CliRunner()


def test_cli_encode_decode_and_foreign_codes(synth_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    c1, c2 = Codec(preset_tiny()), Codec(preset_tiny())
    save_codec(c1, tmp_path / "c1.safetensors")
    save_codec(c2, tmp_path / "c2.safetensors")
    wav = tmp_path / "in.wav"
    save_audio(wav, melody(2.3), SR)
    r = runner.invoke(app, ["encode", str(wav), "--codec", str(tmp_path / "c1.safetensors"),
                            "--bandwidth", "0.9"])
    assert r.exit_code == 0, r.output
    codes = tmp_path / "in.codes.safetensors"
    r = runner.invoke(app, ["decode", str(codes), "-o", str(tmp_path / "out.wav"),
                            "--codec", str(tmp_path / "c1.safetensors")])
    assert r.exit_code == 0, r.output
    y = load_audio(tmp_path / "out.wav")
    assert y.size == int(2.3 * SR)
    r = runner.invoke(app, ["decode", str(codes), "--codec", str(tmp_path / "c2.safetensors")])
    assert r.exit_code == 1 and "made by codec" in r.output.replace("\n", "")
    r = runner.invoke(app, ["info", str(codes)])
    assert "aimusic.codes/1" in r.output and "bandwidth_kbps: 0.9" in r.output


@pytest.mark.parametrize("head", HEADS)
def test_a_folded_codec_saves_and_loads(tmp_path: Path, head: str) -> None:
    torch.manual_seed(0)
    codec = Codec(HEADS[head]()).eval()
    x = torch.randn(1, 1, 4000) * 0.1
    y = codec.decode(codec.encode(x))
    save_codec(codec.fold_weight_norm(), tmp_path / "f.safetensors")
    back = load_codec(tmp_path / "f.safetensors")
    torch.testing.assert_close(back.decode(back.encode(x)), y, atol=1e-5, rtol=0)


def test_missing_codec_names_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="aimusic train-codec"):
        load_codec(tmp_path / "none.safetensors")
    with pytest.raises(AimusicError, match="not available"):
        preset_tiny().levels_for(5.0)


@pytest.mark.skipif(not __import__("shutil").which("opusenc"), reason="opus-tools not installed")
def test_cli_eval_codec_with_opus_writes_json(synth_dir: Path, tmp_path: Path) -> None:
    import json

    torch.manual_seed(0)
    save_codec(Codec(preset_tiny()), tmp_path / "c.safetensors")
    r = runner.invoke(app, ["eval", "codec", str(synth_dir), "--codec", str(tmp_path / "c.safetensors"),
                            "--vs-opus", "--seconds", "2", "--clips", "2", "--json",
                            "-o", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["clips"] == 2 and set(res["codec"]) == {"0.9", "1.8", "3.6"}
    for row in res["codec"].values():
        assert row["mel_distance"] > 0 and row["encode_x_realtime"] > 0
    assert set(res["opus"]) == {"6", "12"}
    # Opus at 12 kbps is closer to the original than at 6, on the same measure
    assert res["opus"]["12"]["mel_distance"] < res["opus"]["6"]["mel_distance"]


def test_bitrate_ladder_tells_a_drop_from_noise() -> None:
    from aimusic.codec.evaluate import bitrate_ladder

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, 20)
    mels = {"1.5": list(base + 0.02), "3": list(base + 0.01 + rng.normal(0, 0.001, 20)),
            "6": list(base + 0.01 + rng.normal(0, 0.01, 20))}
    first, second = bitrate_ladder(mels)
    assert (first["from"], first["to"], first["clips"]) == ("1.5", "3", 20)
    assert first["beyond_noise"] and first["clips_better"] == 20
    assert first["mean_drop"] == pytest.approx(0.01, abs=0.001)
    assert not second["beyond_noise"]  # no drop on average, only clip-to-clip noise


def _scale_piece(seconds: float, key: int, beat: float, seed: int) -> np.ndarray:
    """Notes of one major scale (``key`` semitones above C4) at one tempo: a prompt and
    its true continuation agree in key and rhythm, and two pieces disagree."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), np.float32)
    n = int(beat * SR)
    t = np.arange(n) / SR
    for start in range(0, out.size - n + 1, n):
        f = 261.6 * 2 ** ((key + (0, 2, 4, 5, 7, 9, 11)[rng.integers(0, 7)]) / 12)
        out[start:start + n] = np.exp(-5 * t) * sum(0.3 / h * np.sin(2 * np.pi * f * h * t)
                                                    for h in (1, 2, 3))
    return out


def test_roundtrip_coherence_scores_a_perfect_and_a_wrong_round_trip(tmp_path: Path) -> None:
    """The truth itself keeps all of its coherence; noise and a transposition lose it."""
    from aimusic.gen.evaluate import roundtrip_coherence

    files = []
    for i, (key, beat) in enumerate([(0, 0.25), (6, 0.4), (3, 0.3), (9, 0.2)]):
        files.append(tmp_path / f"p{i}.wav")
        save_audio(files[-1], _scale_piece(6.0, key, beat, i), SR)
    rng = np.random.default_rng(0)
    trips = {"same": lambda x: x,
             "noise": lambda x: (rng.standard_normal(x.size) * x.std()).astype(np.float32),
             "up a tritone": lambda x: _shift(x, 6)}
    res = roundtrip_coherence(files, SR, trips, prompt_seconds=2.0, seconds=3.0)
    coh = res["coherence"]
    assert res["clips"] == 4
    assert coh["same"]["overall"] == pytest.approx(1.0)
    assert coh["noise"]["overall"] < 0.3
    assert coh["up a tritone"]["harmony"] < 0.3 < coh["up a tritone"]["rhythm"]


def _shift(x: np.ndarray, semitones: int) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(x, sr=SR, n_steps=semitones).astype(np.float32)


def test_cli_eval_codec_coherence_and_ladder(tmp_path: Path) -> None:
    d = tmp_path / "pieces"
    for i, (key, beat) in enumerate([(0, 0.25), (6, 0.4), (3, 0.3)]):
        save_audio(d / f"p{i}.wav", _scale_piece(16.0, key, beat, i), SR)
    torch.manual_seed(0)
    save_codec(Codec(preset_tiny()), tmp_path / "c.safetensors")
    r = runner.invoke(app, ["eval", "codec", str(d), "--codec", str(tmp_path / "c.safetensors"),
                            "--clips", "3", "--seconds", "2", "--coherence",
                            "-o", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert "continuation coherence kept (3 clips" in r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert [(s["from"], s["to"]) for s in res["ladder"]] == [("0.9", "1.8"), ("1.8", "3.6")]
    coh = res["coherence"]["coherence"]
    assert set(coh) == {"0.9 kbps", "1.8 kbps", "3.6 kbps"}
    # an untrained codec's round trip keeps little of the pieces' harmony
    assert all(c["harmony"] < 0.5 for c in coh.values())


def _chord(seconds: float, seed: int, notes: tuple[int, ...] = (60, 64, 67)) -> np.ndarray:
    """A C major chord (MIDI notes), six harmonics a note, struck every half second."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for n in notes:
        f = 440 * 2 ** ((n - 69) / 12)
        for h in range(1, 7):
            out += 0.25 / h * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi))
    return (0.1 * out * np.exp(-3 * (t % 0.5))).astype(np.float32)


def _partial_contrast(x: np.ndarray, notes: tuple[int, ...] = (60, 64, 67)) -> np.ndarray:
    """dB by which each of the chord's first four harmonics stands above the spectrum
    between partials (a 1 s FFT: 1 Hz bins)."""
    s = np.abs(np.fft.rfft(x[SR:2 * SR] * np.hanning(SR)))
    out = []
    for n in notes:
        for h in range(1, 5):
            p = round(440 * 2 ** ((n - 69) / 12) * h)
            ring = np.concatenate([s[p - 12:p - 5], s[p + 6:p + 13]])
            out.append(20 * np.log10(s[p - 2:p + 3].max() / (np.median(ring) + 1e-9)))
    return np.array(out)


def test_tiny_music_codec_learns_a_chord_and_keeps_its_partials(tmp_path: Path) -> None:
    """A tiny music codec (spectral encoder, istft head that predicts each bin's frequency:
    ``head_if``) trained on a struck chord for 300 steps: its round trip of the chord
    struck with other phases keeps the partials as lines standing well above the spectrum
    between them. (The free-phase head, trained alike, keeps them some 9 dB above it: a
    steady latent gives it partials on the 75 Hz frame-rate grid.)"""
    d = tmp_path / "chord"
    save_audio(d / "c.wav", _chord(3.0, 0), SR)
    cfg = dataclasses.replace(HEADS["stft-istft-if"](), head_channels=64)
    torch.manual_seed(0)
    train = tiny_train(steps=CHORD_STEPS, lr=3e-3, adv_start=10**9, spec_start=0,
                       val_every=CHORD_STEPS, val_seconds=3.0, segment_seconds=0.5,
                       batch_size=4)
    train_codec(d, tmp_path / "c.safetensors", cfg, train, CPU, val_dir=d, show_progress=False)
    codec = load_codec(tmp_path / "c.safetensors")
    x = _chord(3.0, 1)
    y = codec.decode(codec.encode(torch.from_numpy(x)[None, None]))[0, 0, :x.size].numpy()
    before, after = _partial_contrast(x), _partial_contrast(y)
    assert before.min() > 15
    assert np.median(after) > 20 and (after > 10).mean() >= 2 / 3, after.round(1)


CHORD_STEPS = 300


def _sinusoid_residual(y: np.ndarray, f: float) -> float:
    """Share of y's energy (its middle second) that is not a sinusoid at f (any phase)."""
    seg = y[SR // 2: 3 * SR // 2].astype(np.float64)
    t = np.arange(seg.size) / SR
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    return float(np.sum((seg - basis @ coef) ** 2) / np.sum(seg ** 2))


def test_an_if_head_renders_a_steady_partial_between_bins() -> None:
    """Given a steady tone's magnitudes and, in every frame and bin, how far the tone lies
    off the bin's centre, the IF head's accumulated phases give back the tone at its own
    frequency. The same magnitudes with one steady phase per bin (what a time-invariant
    head writes for a steady latent) give back something else."""
    from aimusic.codec.modules import IF_RANGE

    hop, f = 320, 261.63  # middle C: 13.95 bins of 18.75 Hz, off every centre
    head = SpectralDecoder(8, 8, hop, (1,), if_phase=True)
    t = torch.arange(2 * SR) / SR
    x = (0.3 * torch.sin(2 * torch.pi * f * t))[None, None]
    frames = x.shape[-1] // hop
    log_mag = head.analyze(x, frames).abs().clamp_min(1e-7).log()
    k = torch.arange(head.n_fft // 2 + 1, dtype=torch.float64)[:, None]
    off = (f * head.n_fft / SR - k).clamp(-IF_RANGE + 1e-3, IF_RANGE - 1e-3)
    out = torch.atanh(off / IF_RANGE).float().expand(-1, frames)[None]
    y = head.synthesize(log_mag, head.phase(out))[0, 0].numpy()
    assert _sinusoid_residual(y, f) < 0.01
    steady = SpectralDecoder(8, 8, hop, (1,))
    y_steady = steady.synthesize(log_mag, steady.phase(torch.zeros_like(out)))[0, 0].numpy()
    assert _sinusoid_residual(y_steady, f) > 0.5


def test_init_from_the_kept_music_codec_carries_its_schedule(synth_dir: Path, tmp_path: Path) -> None:
    """The music codec kept in the repository (research/checkpoints: float16, no optimizer,
    its steps and minutes in the file and its history beside it), so `train-codec --init`
    from it carries on: the step count, the minutes and the log go on from the kept one's."""
    from aimusic.artifacts import read_metadata

    src = Path(__file__).resolve().parents[1] / "research/checkpoints/music-codec/codec.safetensors"
    extra = read_metadata(src)["extra"]
    assert extra["stored_as"] == "float16" and extra["steps"] > 1000 and extra["minutes"] > 30
    history = [json.loads(x) for x in log_path(src).read_text().splitlines()]
    assert [x for x in history if "event" not in x][-1]["step"] == extra["steps"]
    out = tmp_path / "on.safetensors"
    cfg = dataclasses.replace(TRAIN_PRESETS["music"](), steps=extra["steps"] + 2, val_every=2,
                              batch_size=2, segment_seconds=0.5, val_clips=1, val_seconds=1.0)
    m = train_codec(synth_dir, out, preset_tiny(), cfg, CPU, show_progress=False, init=src)
    meta = read_metadata(out)
    assert m["step"] == extra["steps"] + 2 and meta["config"]["head"] == "istft"
    assert meta["extra"]["minutes"] > extra["minutes"]
    lines = [json.loads(x) for x in log_path(out).read_text().splitlines()]
    assert lines[:len(history)] == history  # the kept history first
    starts = [x for x in lines if x.get("event") == "start"]
    assert starts[-1]["step"] == extra["steps"] and starts[-1]["from"].startswith("init ")
