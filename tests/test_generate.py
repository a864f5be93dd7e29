"""continue / generate: the chain of tiny random models, end to end through the CLI.

The LMs have a context of 64 tokens, so a request of a few seconds already goes through
every stage's sliding windows (semantic 63 tokens, coarse 6, fine 7 frames, delay 14).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, melody
from typer.testing import CliRunner

from aimusic.audio import load_audio, save_audio
from aimusic.cli import app
from aimusic.codec.model import Codec, preset_tiny, save_codec
from aimusic.errors import AimusicError, ArtifactError
from aimusic.fileio import file_hash
from aimusic.gen import chain as G
from aimusic.gen import continuation as C
from aimusic.gen import stages as S
from aimusic.gen.decode import Decoder
from aimusic.lm import layouts as L
from aimusic.lm.model import PRESETS as LM_PRESETS
from aimusic.lm.model import TokenLM, load_lm, save_lm
from aimusic.semantic.model import PRESETS as SEM_PRESETS
from aimusic.semantic.model import SemanticModel, save_semantic
from aimusic.voice import prompt as VP

runner = CliRunner()


def make_models(d: Path, stages=("semantic", "coarse", "fine", "delay", "acoustic"), max_len: int = 64,
                depends: dict[str, str] | None = None) -> Path:
    """Random tiny codec, iteration-1 semantic model and LMs that belong together."""
    torch.manual_seed(0)
    d.mkdir(parents=True, exist_ok=True)
    codec = save_codec(Codec(preset_tiny()), d / "codec.safetensors")
    sem = SemanticModel(SEM_PRESETS["tiny"]())
    sem.get_buffer("centroids").normal_()
    semantic = save_semantic(sem, d / "semantic.safetensors")
    dep = depends or {"codec": file_hash(codec), "semantic": file_hash(semantic)}
    for stage in stages:
        cfg = dataclasses.replace(LM_PRESETS["tiny"](), stage=stage, max_len=max_len)
        save_lm(TokenLM(cfg), d / f"lm-{stage}.safetensors", depends=dep)
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("audio") / "in.wav"
    save_audio(p, melody(1.3, seed=1), SR)
    return p


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def fail(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 1, r.output
    return " ".join(r.output.split())


def test_plan_chunks_and_fine_windows() -> None:
    # prompt of 5, up to 12 in windows of 6 keeping 3: every window ends what it starts
    assert S.plan_chunks(5, 12, 6, 3) == [(2, 5, 8), (5, 8, 11), (8, 11, 12)]
    assert S.plan_chunks(0, 4, 6, 3) == [(0, 0, 4)]
    assert S.plan_chunks(7, 7, 6, 3) == []
    for first, total, window in [(0, 1, 7), (9, 30, 7), (3, 100, 7), (0, 14, 7), (5, 6, 31)]:
        length, starts = S.fine_windows(first, total, window)
        assert length <= window and starts[0] == first and starts[-1] + length == total
        assert all(b - a <= length for a, b in zip(starts, starts[1:]))  # no gaps
        assert len(starts) == -(-(total - first) // window)  # as few windows as fit


def test_sampling_settings() -> None:
    s = G.sampling_for(("semantic", "coarse", "fine"))
    assert [v.temperature for v in s.values()] == [1.0, 0.8, 0.6]
    s = G.sampling_for(("semantic", "delay"), [1.0], [0], [0.9, 1.0])
    assert s["semantic"] == S.Sampling(1.0, None, 0.9) and s["delay"] == S.Sampling(1.0, None, None)
    with pytest.raises(G.AimusicError, match="one per stage"):
        G.sampling_for(("semantic", "coarse", "fine"), [1.0, 0.5])
    s = G.sampling_for(G.LAYOUT_STAGES["acoustic"])  # the acoustic stage samples as coarse
    assert [v.temperature for v in s.values()] == [0.8, 0.6]


def test_a_models_folder_states_its_own_sampling_defaults(tmp_path: Path, prompt: Path) -> None:
    """sampling.json beside the models (the settings a bundle's figures were measured with)
    replaces the global defaults for the stages it names; flags still win; a bad file is an
    error that names it."""
    import json

    d = make_models(tmp_path / "m", stages=("semantic", "coarse", "fine"))
    assert G.load_chain(d).sampling() == G.sampling_for(("semantic", "coarse", "fine"))
    (d / "sampling.json").write_text(json.dumps({"_note": "measured with these",
                                                 "coarse": {"temperature": 1.0, "top_k": 0}}))
    chain = G.load_chain(d)
    s = chain.sampling()
    assert s["coarse"] == S.Sampling(1.0, None, None)
    assert s["semantic"] == S.Sampling(1.0, 250, None) and s["fine"].temperature == 0.6
    s = chain.sampling([0.7], [5])  # flags win over the folder's defaults
    assert s["coarse"] == S.Sampling(0.7, 5, None)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"  # the CLI samples with them
    cli("--seed", "3", "continue", str(prompt), "-s", "0.5", "-o", str(a), "--models", str(d))
    cli("--seed", "3", "continue", str(prompt), "-s", "0.5", "-o", str(b), "--models", str(d),
        "--temperature", "1.0", "--temperature", "1.0", "--temperature", "0.6",
        "--top-k", "250", "--top-k", "0", "--top-k", "250")
    assert np.array_equal(sf.read(str(a))[0], sf.read(str(b))[0])
    for bad in ('{"coarse": {"temperature": -1}}', '{"medium": {}}', '{"coarse": {"temp": 1}}',
                "not json"):
        (d / "sampling.json").write_text(bad)
        with pytest.raises(ArtifactError, match="sampling.json"):
            G.load_chain(d)


def test_equal_power_crossfade() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(48000), rng.standard_normal(48000)
    x = C.crossfade(a, b)
    assert abs(x.std() - 1.0) < 0.02  # uncorrelated signals keep their power through the fade
    fade_out = C.crossfade(np.ones(4), np.zeros(4))
    assert np.allclose(fade_out[[0, -1]], [np.cos(np.pi / 16), np.sin(np.pi / 16)])


def test_continue_end_to_end_exact_length_and_same_seed_same_audio(models: Path, prompt: Path,
                                                                   tmp_path: Path) -> None:
    original = load_audio(prompt)
    outs = []
    for i in range(2):
        o = tmp_path / f"c{i}.wav"
        text = cli("--seed", "3", "continue", str(prompt), "--seconds", "2.01", "-o", str(o),
                   "--models", str(models))
        assert str(o) in text
        outs.append(sf.read(str(o), dtype="float32")[0])
    assert np.array_equal(outs[0], outs[1])
    assert outs[0].size == original.size + round(2.01 * SR)
    # the original is kept up to the 20 ms crossfade before the join (16-bit rounding)
    keep = original.size - int(C.XFADE_SECONDS * SR)
    assert np.abs(outs[0][:keep] - original[:keep]).max() < 1e-4
    assert np.abs(outs[0][original.size:]).max() > 0  # something was generated

    other = tmp_path / "seed4.wav"
    cli("continue", str(prompt), "-s", "2.01", "-o", str(other), "--seed", "4", "--models", str(models))
    assert not np.array_equal(sf.read(str(other), dtype="float32")[0], outs[0])
    matched = tmp_path / "matched.wav"
    cli("--seed", "3", "continue", str(prompt), "-s", "2.01", "-o", str(matched), "--models",
        str(models), "--voice-match", "2")
    y = sf.read(str(matched), dtype="float32")[0]
    assert y.size == outs[0].size and not np.array_equal(y, outs[0])
    assert np.abs(y[:keep] - original[:keep]).max() < 1e-4  # the prompt itself is untouched
    eq = tmp_path / "eq.wav"  # equalized to undo the codec's colouring of the prompt
    cli("--seed", "3", "continue", str(prompt), "-s", "2.01", "-o", str(eq), "--models",
        str(models), "--prompt-eq")
    y = sf.read(str(eq), dtype="float32")[0]
    assert y.size == outs[0].size and not np.array_equal(y, outs[0])
    assert np.abs(y[:keep] - original[:keep]).max() < 1e-4  # the prompt itself is untouched
    coarse_only = tmp_path / "coarse.wav"
    cli("--seed", "3", "continue", str(prompt), "-s", "2.01", "-o", str(coarse_only), "--models",
        str(models), "--no-fine")
    y = sf.read(str(coarse_only), dtype="float32")[0]
    assert y.size == outs[0].size and not np.array_equal(y, outs[0])
    assert "no fine stage" in fail("continue", str(prompt), "-s", "1", "--models", str(models),
                                   "--layout", "delay", "--no-fine")
    for bad in ("nan", "inf", "-inf", "0"):  # a line naming the value, never a traceback
        msg = fail("continue", str(prompt), "-s", bad, "--models", str(models))
        assert "--seconds must be a positive number" in msg and "Traceback" not in msg, msg


def test_match_voice_re_expresses_new_frames_in_the_prompts() -> None:
    torch.manual_seed(0)
    # plain lookups in the latent, as the speech codec's, and codebooks as RVQ learns them:
    # each level refines the last
    codec = Codec(dataclasses.replace(preset_tiny(), codebook_dim=32)).eval()
    K, n = codec.cfg.levels, codec.cfg.codebook_size
    for level in range(K):
        codec.quantizer.vq(level).embed.mul_(0.1 ** level)
    prompt, new = torch.randint(0, n, (K, 30)), torch.randint(0, n, (K, 12))
    assert torch.equal(VP.match_voice(codec, prompt, new, 0), new)  # off
    assert torch.equal(VP.match_voice(codec, prompt[:, :0], new, 4), new)  # no voice to match
    assert torch.equal(VP.match_voice(codec, new, new, 1), new)  # each frame is its own nearest
    one = VP.match_voice(codec, prompt, new, 1)
    frames = {tuple(c) for c in prompt.T.tolist()}
    assert all(tuple(c) in frames for c in one.T.tolist())  # k=1 copies prompt frames
    four = VP.match_voice(codec, prompt, new, 4)
    assert four.shape == new.shape and four.dtype == new.dtype
    assert not torch.equal(four, one)  # a mean of four frames, quantized again
    # a voice whose frames each come four times: the four nearest are one frame's copies,
    # their mean is that frame, and quantized again it is that frame's codes
    fours = prompt[:, :6].repeat_interleave(4, dim=1)
    matched = VP.match_voice(codec, fours, new, 4)
    frames = {tuple(c) for c in fours.T.tolist()}
    assert all(tuple(c) in frames for c in matched.T.tolist())


def test_prompt_eq_undoes_a_colouring_sound_by_sound() -> None:
    from scipy.signal import butter, lfilter

    from aimusic.dsp import EQ_LIMIT_DB, equalize, mel_distance, prompt_eq

    rng = np.random.default_rng(0)
    n_fft = 1280

    def dull(x: np.ndarray) -> np.ndarray:  # a darker rendering
        return lfilter(*butter(2, 1500 / (SR / 2)), x).astype(np.float32)

    def thin(x: np.ndarray) -> np.ndarray:  # a rendering without the bass
        return lfilter(*butter(2, 1500 / (SR / 2), "high"), x).astype(np.float32)

    x = melody(2.0, seed=5) + 0.01 * rng.standard_normal(2 * SR).astype(np.float32)
    same = prompt_eq(x, x, SR, n_fft)
    assert same.diffs.abs().max() < 1e-5  # nothing to undo
    assert np.abs(equalize(x, same) - x).max() < 1e-5  # and nothing undone
    eq = prompt_eq(x, dull(x), SR, n_fft)
    hz = np.arange(n_fft // 2 + 1) * SR / n_fft
    lift = eq.diffs.mean(1).numpy()
    assert abs(lift[hz < 300]).max() < 0.1  # the pass band is left alone
    assert lift[(hz > 4000) & (hz < 6000)].min() > 1.0  # the cut treble is raised
    fixed = equalize(dull(x), eq)
    assert fixed.size == x.size and mel_distance(x, fixed, SR) < 0.6 * mel_distance(x, dull(x), SR)
    big = prompt_eq(x, 0.01 * x, SR, n_fft)  # 40 dB quieter: raised by the limit, no more
    assert np.abs(equalize(0.01 * x, big)).max() < 0.01 * np.abs(x).max() * 10 ** (EQ_LIMIT_DB / 20) * 1.1

    # a codec that colours two sounds two ways: frame by frame, each is undone its own way;
    # one correction for all frames (nearest = every frame) can only split the difference
    def voice(seed: int) -> tuple[np.ndarray, np.ndarray]:
        tones = melody(1.0, seed=seed)
        hiss = 0.1 * np.random.default_rng(seed).standard_normal(SR).astype(np.float32)
        return np.concatenate([tones, hiss]), np.concatenate([dull(tones), thin(hiss)])

    rec, ren = voice(1)
    later, later_ren = voice(2)
    by_sound = equalize(later_ren, prompt_eq(rec, ren, SR, n_fft))
    overall = equalize(later_ren, prompt_eq(rec, ren, SR, n_fft, nearest=10 ** 6))
    assert mel_distance(later, by_sound, SR) < 0.8 * mel_distance(later, overall, SR)
    assert mel_distance(later, by_sound, SR) < 0.8 * mel_distance(later, later_ren, SR)


def test_codec_eq_measures_all_of_the_prompt_up_to_a_limit(models: Path, monkeypatch) -> None:
    from aimusic.dsp import prompt_eq

    chain = G.load_chain(models, "flat")
    audio = melody(4.0, seed=3)
    _, codes = G.encode_prompt(chain, audio, 10)  # the LMs hear the last 10 tokens (0.4 s)
    heard = audio[audio.size - codes.shape[1] * chain.codec.cfg.hop:]
    short = VP.codec_eq(chain.codec, heard, codes)
    want = prompt_eq(heard, G.decode_codes(chain, codes), SR, 4 * chain.codec.cfg.hop)
    assert torch.equal(short.diffs, want.diffs)  # just what the codes hold: their rendering
    long = VP.codec_eq(chain.codec, audio, codes)  # all 4 s of the voice
    assert long.keys.shape[0] > 5 * short.keys.shape[0]
    assert VP.codec_eq(chain.codec, audio, codes) is long  # the same voice again: kept, not redone
    assert VP.codec_eq(chain.codec, audio.copy(), codes) is long  # equal samples are the same voice
    assert VP.codec_eq(chain.codec, audio, codes[:3]) is not long  # other levels: measured again
    monkeypatch.setattr(VP, "EQ_SECONDS", 1.0)  # only the prompt's last second
    capped = VP.codec_eq(chain.codec, audio, codes)
    assert short.keys.shape[0] < capped.keys.shape[0] <= 1.0 * SR / chain.codec.cfg.hop + 5
    assert VP.codec_eq(chain.codec, audio, codes[:, :0]) is None  # no prompt frames


def test_long_requests_through_sliding_windows_have_exact_lengths(models: Path, prompt: Path,
                                                                  tmp_path: Path) -> None:
    # 3.3 s = 83 semantic tokens: past the semantic LM's 63, 14 coarse windows, 36 fine ones
    o = tmp_path / "long.wav"
    cli("continue", str(prompt), "--seconds", "3.3", "--continuation-only", "--prompt-seconds", "0.6",
        "-o", str(o), "--models", str(models), "--seed", "1")
    assert sf.info(str(o)).frames == round(3.3 * SR)
    default_out = prompt.with_name("in.continued.wav")
    cli("continue", str(prompt), "-s", "0.05", "--models", str(models), "--seed", "1")
    assert sf.info(str(default_out)).frames == load_audio(prompt).size + round(0.05 * SR)


@pytest.mark.parametrize("layout", ["flat", "delay", "acoustic"])
def test_cached_uncached_threaded_and_in_turn_sample_the_same_tokens(models: Path, layout: str) -> None:
    chain = G.load_chain(models, layout)
    audio = melody(1.0, seed=2)
    sem, codes = G.encode_prompt(chain, audio, chain.max_prompt_tokens())
    P = 3 if layout == "acoustic" else 25  # the acoustic LM keeps half its window of 7
    assert sem.shape == (P,) and codes.shape == (8, 3 * P)
    runs = [G.sample_tokens(chain, sem, codes, 20, G.sampling_for(chain.stages), 11, cache, threads=t)
            for cache, t in [(True, False), (False, False), (True, True)]]
    for other in runs[1:]:
        assert torch.equal(runs[0][0], other[0]) and torch.equal(runs[0][1], other[1])
    new_sem, new_codes, stats = runs[0]
    assert new_sem.shape == ((0,) if layout == "acoustic" else (20,)) and new_codes.shape == (8, 60)
    assert set(stats) == set(chain.stages)
    assert all(v["seconds"] > 0 and v["tokens"] > 0 for v in stats.values())
    assert {s: int(v["tokens"]) for s, v in stats.items()} == G.stage_tokens(chain, P, 20)
    # without the fine stage: the same coarse levels, and nothing else
    if layout == "delay":
        with pytest.raises(AimusicError, match="no fine stage"):
            G.sample_tokens(chain, sem, codes, 20, G.sampling_for(chain.stages), 11, fine=False)
        return
    sem2, coarse, stats2 = G.sample_tokens(chain, sem, codes, 20, G.sampling_for(chain.stages), 11,
                                           fine=False)
    kc = chain.lms[chain.coarse_lm].cfg.coarse_levels
    assert torch.equal(sem2, new_sem) and torch.equal(coarse, new_codes[:kc])
    assert set(stats2) == set(chain.stages) - {"fine"}


def test_a_chain_without_a_fine_lm_decodes_the_coarse_levels(tmp_path: Path, prompt: Path) -> None:
    """A models folder with no lm-fine (the piano bundle ships none): the chain loads with
    the stages it has, samples the coarse levels alone and the codec decodes them; the CLI's
    default --fine does not ask for the missing LM."""
    d = make_models(tmp_path / "m", stages=("semantic", "coarse"))
    chain = G.load_chain(d)
    assert chain.layout == "flat" and chain.stages == ("semantic", "coarse")
    P = 4
    sem = torch.randint(0, 16, (P,))
    codes = torch.randint(0, 64, (8, 3 * P))
    _, new_codes, stats = G.sample_tokens(chain, sem, codes, 10, G.sampling_for(chain.stages), 5)
    kc = chain.lms["coarse"].cfg.coarse_levels
    assert new_codes.shape == (kc, 30) and set(stats) == {"semantic", "coarse"}
    assert G.stage_tokens(chain, P, 10) == {"semantic": 10, "coarse": 30 * kc}
    out = tmp_path / "out.wav"
    cli("--seed", "3", "continue", str(prompt), "-s", "1", "-o", str(out), "--models", str(d))
    y = sf.read(str(out), dtype="float32")[0]
    assert abs(y.size - 2.3 * SR) <= 320 and np.isfinite(y).all()
    # the fine LM is optional, the coarse one is not
    (d / "lm-coarse.safetensors").unlink()
    assert "coarse LM not found" in fail("continue", str(prompt), "-s", "1", "--models", str(d))


def test_a_failing_stage_stops_the_others_and_its_error_is_raised() -> None:
    out = S.Stream(torch.zeros(0))

    def first(tick):
        out.extend(torch.ones(2))
        raise ValueError("boom")

    def second(tick):
        out.wait(5)

    for threads in (False, True):
        with pytest.raises(ValueError, match="boom"):
            S.run_stages([("a", first, out), ("b", second, None)], threads, lambda s: lambda k: None)
        out = S.Stream(torch.zeros(0))


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine", "delay", "acoustic"])
def test_decoder_steps_equal_the_models_forward_pass(stage: str) -> None:
    torch.manual_seed(1)
    lm = TokenLM(dataclasses.replace(LM_PRESETS["tiny"](), stage=stage))
    v = lm.cfg.layout
    shape = (3, 20, v.levels) if stage == "delay" else (3, 20)
    lo = v.acoustic_offset if stage in ("fine", "delay") else v.semantic_offset
    tokens = torch.randint(lo, lm.cfg.vocab, shape)
    full = lm(tokens)  # [B, T, V] or [B, T, S, C]
    dec = Decoder(lm)
    cache = lm.new_cache()
    h = [dec.prefill(tokens[:, :12], cache)]
    h += [dec.step(tokens[:, t], cache) for t in range(12, 20)]
    assert cache.length == 20
    for j, t in enumerate(range(11, 20)):  # the hidden state after position t predicts t + 1
        assert torch.allclose(dec.logits(h[j]), full[:, t], atol=1e-5)
        if stage != "delay":  # only the allowed range's logits
            rng = v.level_range(1) if stage != "semantic" else v.semantic_range()
            assert torch.allclose(dec.logits(h[j], rng), full[:, t, rng[0]:rng[1]], atol=1e-5)


def test_delay_layout_forces_the_prompts_levels(models: Path, monkeypatch) -> None:
    chain = G.load_chain(models, "delay")
    K = 8
    seen = []
    real = Decoder.generate

    def spy(self, prompt, n, **kw):
        out = real(self, prompt, n, **kw)
        seen.append((prompt.shape[1], out))
        return out

    monkeypatch.setattr(Decoder, "generate", spy)
    sem = torch.randint(0, 16, (10,))
    known = torch.randint(0, 64, (K, 12))  # 4 tokens of prompt frames
    dec = chain.decoders["delay"]
    codes = S.delay_stage(dec, chain.windows["delay"], sem, 10, known, 3, S.Sampling(1.5, None),
                          torch.Generator().manual_seed(0))
    assert codes.shape == (K, 30) and torch.equal(codes[:, :12], known)
    prefix, out = seen[0]
    assert prefix == 10 + 1 + 12  # the first window holds every semantic token
    ids = L.delay_sequence(dec.lm.cfg.layout, sem, known)[0]
    # the K-1 steps after the prompt hold the prompt frames' upper levels: forced
    tail = ids[prefix:]
    got = out[0, prefix:prefix + tail.shape[0]]
    assert torch.equal(got[tail != L.PAD], tail[tail != L.PAD])


def test_layout_choice_and_generate(models: Path, tmp_path: Path, prompt: Path) -> None:
    delay_only = tmp_path / "delay-only"
    delay_only.mkdir()
    for name in ("codec", "semantic", "lm-semantic", "lm-delay"):
        (delay_only / f"{name}.safetensors").symlink_to(models / f"{name}.safetensors")
    assert G.choose_layout(models, None) == "flat"
    assert G.choose_layout(delay_only, None) == "delay"
    assert G.choose_layout(models, "delay") == "delay"
    o = tmp_path / "d.wav"
    cli("-v", "continue", str(prompt), "-s", "1.5", "-o", str(o), "--models", str(delay_only))
    assert sf.info(str(o)).frames == load_audio(prompt).size + round(1.5 * SR)

    out = tmp_path / "gen"
    text = cli("generate", "--seconds", "0.7", "-n", "2", "-o", str(out), "--models", str(models),
               "--seed", "5", "--temperature", "1.0", "--top-p", "0.9")
    files = sorted(out.glob("*.wav"))
    assert [f.name for f in files] == ["sample-000.wav", "sample-001.wav"] and "seed 6" in text
    a, b = (sf.read(str(f), dtype="float32")[0] for f in files)
    assert a.size == b.size == round(0.7 * SR) and not np.array_equal(a, b)


def test_clear_errors(models: Path, prompt: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "train-codec" in fail("continue", str(prompt), "-s", "1", "--models", str(empty))
    (empty / "codec.safetensors").symlink_to(models / "codec.safetensors")
    assert "train-semantic" in fail("continue", str(prompt), "-s", "1", "--models", str(empty))
    (empty / "semantic.safetensors").symlink_to(models / "semantic.safetensors")
    text = fail("continue", str(prompt), "-s", "1", "--models", str(empty))
    assert "lm-semantic.safetensors" in text and "aimusic train-lm" in text
    assert "train-lm --layout delay" in fail("generate", "-s", "1", "--layout", "delay",
                                             "--models", str(empty))
    text = fail("generate", "-s", "1", "--layout", "acoustic", "--models", str(empty))
    assert "lm-acoustic.safetensors" in text and "train-lm --stage acoustic" in text
    assert "choose flat, delay, acoustic" in fail("generate", "-s", "1", "--layout", "medium",
                                                  "--models", str(empty))

    foreign = make_models(tmp_path / "foreign", ("semantic",), depends={"codec": "0" * 16,
                                                                        "semantic": "1" * 16})
    for s in ("coarse", "fine"):
        (foreign / f"lm-{s}.safetensors").symlink_to(models / f"lm-{s}.safetensors")
    text = fail("continue", str(prompt), "-s", "1", "--models", str(foreign))
    assert "lm-semantic.safetensors: was trained on tokens of semantic 1111111111111111" in text
    # ... but the semantic LM reads semantic tokens alone: another codec may render them
    other_codec = tmp_path / "other-codec"
    other_codec.mkdir()
    for name in ("codec", "semantic", "lm-coarse", "lm-fine"):
        (other_codec / f"{name}.safetensors").symlink_to(models / f"{name}.safetensors")
    sem_lm = load_lm(models / "lm-semantic.safetensors")
    save_lm(sem_lm, other_codec / "lm-semantic.safetensors",
            depends={**sem_lm.depends, "codec": "0" * 16})
    cli("continue", str(prompt), "-s", "0.5", "--models", str(other_codec), "-o",
        str(tmp_path / "other.wav"))
    # ... and the acoustic-only LM reads codec tokens alone: another semantic model may stand
    # beside it, another codec may not
    ac = load_lm(models / "lm-acoustic.safetensors")
    for role, ok in (("semantic", True), ("codec", False)):
        save_lm(ac, other_codec / "lm-acoustic.safetensors", depends={**ac.depends, role: "2" * 16})
        args = ("continue", str(prompt), "-s", "0.5", "--models", str(other_codec), "--layout",
                "acoustic", "-o", str(tmp_path / f"acoustic-{role}.wav"))
        if ok:
            cli(*args)
        else:
            assert "was trained on tokens of codec 2222222222222222" in fail(*args)

    silent = tmp_path / "silent.wav"
    save_audio(silent, np.zeros(SR, np.float32), SR)
    assert "silent" in fail("continue", str(silent), "-s", "1", "--models", str(models))
    short = tmp_path / "short.wav"
    save_audio(short, melody(0.3), SR)
    assert "too short" in fail("continue", str(short), "-s", "1", "--models", str(models))
    assert "one output" in fail("continue", str(short), str(silent), "-s", "1", "-o", "x.wav")


def test_the_window_an_lm_was_trained_on_is_kept(models: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    for name in ("codec", "semantic", "lm-semantic", "lm-fine"):
        (d / f"{name}.safetensors").symlink_to(models / f"{name}.safetensors")
    dep = {"codec": file_hash(models / "codec.safetensors"),
           "semantic": file_hash(models / "semantic.safetensors")}
    cfg = dataclasses.replace(LM_PRESETS["tiny"](), stage="coarse", max_len=64)
    save_lm(TokenLM(cfg), d / "lm-coarse.safetensors", depends=dep, extra={"window": 4})
    chain = G.load_chain(d)
    assert chain.windows == {"semantic": 63, "coarse": 4, "fine": 7}
    sem, codes = G.encode_prompt(chain, melody(1.0), 10)
    _, new, _ = G.sample_tokens(chain, sem, codes, 9, G.sampling_for(chain.stages), 0)
    assert new.shape == (8, 27)


def test_acoustic_layout_continues_without_the_semantic_stage(models: Path, prompt: Path,
                                                              tmp_path: Path, monkeypatch) -> None:
    """AudioLM's acoustic-only ablation: lm-acoustic and lm-fine, no semantic LM."""
    outs = []
    for name in ("a0", "a1"):
        o = tmp_path / f"{name}.wav"
        cli("--seed", "3", "continue", str(prompt), "--layout", "acoustic", "-s", "1.3", "-o", str(o),
            "--models", str(models))
        outs.append(sf.read(str(o), dtype="float32")[0])
    assert np.array_equal(outs[0], outs[1])  # same seed, same audio
    original = load_audio(prompt)
    assert outs[0].size == original.size + round(1.3 * SR)
    assert np.abs(outs[0][original.size:]).max() > 0
    flat = tmp_path / "flat.wav"
    cli("--seed", "3", "continue", str(prompt), "-s", "1.3", "-o", str(flat), "--models", str(models))
    assert not np.array_equal(sf.read(str(flat), dtype="float32")[0], outs[0])
    gen = tmp_path / "gen"
    cli("generate", "-s", "0.7", "--layout", "acoustic", "-o", str(gen), "--models", str(models),
        "--seed", "5")
    assert sf.info(str(gen / "sample-000.wav")).frames == round(0.7 * SR)

    # only when asked for; its LMs are the acoustic and fine ones
    assert G.choose_layout(models, None) == "flat"
    chain = G.load_chain(models, "acoustic")
    assert chain.stages == ("acoustic", "fine") and set(chain.lms) == {"acoustic", "fine"}
    assert chain.windows == {"acoustic": 7, "fine": 7} and chain.max_prompt_tokens() == 3
    seen = []
    real = Decoder.generate

    def spy(self, prompt, n, **kw):
        seen.append((self.lm.cfg.stage, prompt.clone()))
        return real(self, prompt, n, **kw)

    monkeypatch.setattr(Decoder, "generate", spy)
    sem, codes = G.encode_prompt(chain, melody(1.0, seed=2), chain.max_prompt_tokens())
    new_sem, new_codes, stats = G.sample_tokens(chain, sem, codes, 10, G.sampling_for(chain.stages),
                                                0, threads=False)
    assert new_sem.shape == (0,) and new_codes.shape == (8, 30) and set(stats) == {"acoustic", "fine"}
    # the acoustic LM's first window: SEP and the prompt's coarse frames, no semantic token
    stage, first = seen[0]
    assert stage == "acoustic" and torch.equal(first[0], L.acoustic_sequence(
        chain.lms["acoustic"].cfg.layout, codes, 3)[0])
    assert {s for s, _ in seen} == {"acoustic", "fine"}

    # the acoustic and fine LMs must split the levels alike
    d = tmp_path / "split"
    d.mkdir()
    for name in ("codec", "semantic", "lm-fine"):
        (d / f"{name}.safetensors").symlink_to(models / f"{name}.safetensors")
    dep = {"codec": file_hash(models / "codec.safetensors"),
           "semantic": file_hash(models / "semantic.safetensors")}
    cfg = dataclasses.replace(LM_PRESETS["tiny"](), stage="acoustic", max_len=64, coarse_levels=2)
    save_lm(TokenLM(cfg), d / "lm-acoustic.safetensors", depends=dep)
    with pytest.raises(G.AimusicError, match="acoustic and fine LMs split the levels differently"):
        G.load_chain(d, "acoustic")


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(2 * np.pi * 2 * hz * t)).astype(np.float32)


@pytest.mark.parametrize("layout", ["flat", "delay", "acoustic"])
def test_a_chunked_continuation_is_one_decode_of_its_codes_in_bounded_context(
        models: Path, layout: str, monkeypatch) -> None:
    """Chunks join without a seam: the audio a long request streams out equals one decode of
    all the codes it made (a constructed tone as the prompt), while every chunk reads a
    context no longer than the first LM's window and the decoder's buffer stays bounded."""
    chain = G.load_chain(models, layout)
    calls: list[tuple[int, torch.Tensor]] = []
    sample = C.sample_tokens

    def recording(chain_, sem, codes, n, *a, **k):
        out = sample(chain_, sem, codes, n, *a, **k)
        calls.append((sem.numel(), out[1]))
        return out

    monkeypatch.setattr(C, "sample_tokens", recording)
    buffers: list[int] = []
    push = C.Renderer.push

    def measured(self, new, last=False):
        y = push(self, new, last)
        buffers.append(self.codes.shape[1])
        return y

    monkeypatch.setattr(C.Renderer, "push", measured)
    prompt = tone(1.3)
    lines: list[str] = []
    c = C.Continuation(chain, prompt, 4.0, seed=5, chunk_seconds=0.6, continuation_only=True,
                       report=lines.append)
    y = np.concatenate(list(c.blocks()))
    assert y.size == round(4.0 * SR) and c.n_chunks == 7 and len(lines) == 7
    assert "chunk 7/7" in lines[-1] and "real time" in lines[-1]
    assert max(n for n, _ in calls) <= chain.max_prompt_tokens()
    codes = torch.cat([c.codes, *[k for _, k in calls]], 1)
    whole = G.decode_codes(chain, codes)
    P = c.codes.shape[1] * chain.codec.cfg.hop
    assert np.abs(y - whole[P:P + y.size]).max() < 1e-5
    frames = chain.frames_per_token * c.per_chunk
    assert max(buffers) <= frames + 2 * S_context(chain)
    # the same seed gives the same chunks; a request in one chunk is made as before chunks
    again = C.continue_audio(chain, prompt, 4.0, seed=5, chunk_seconds=0.6, continuation_only=True)
    assert np.array_equal(again["audio"], y)
    one = C.continue_audio(chain, prompt, c.per_chunk * chain.token_samples / SR, seed=5,
                           continuation_only=True)["audio"]
    held = S_context(chain) * chain.codec.cfg.hop  # decoded before the next chunk existed
    assert np.abs(one[:-held] - y[:one.size - held]).max() < 1e-5


def S_context(chain) -> int:
    from aimusic.codec.stream import context_frames

    return context_frames(chain.codec)


def test_a_long_continuation_streams_to_a_wav_that_plays_while_it_is_written(
        models: Path, prompt: Path, tmp_path: Path) -> None:
    from aimusic.audio import AudioStreamWriter

    o = tmp_path / "growing.wav"
    with AudioStreamWriter(o, SR) as w:
        for k in range(3):
            w.write(np.full(1000, 0.1 * (k + 1), np.float32))
            assert sf.info(str(o)).frames == 1000 * (k + 1)  # a valid file at every moment
    y, sr = sf.read(str(o), dtype="float32")
    assert sr == SR and np.allclose(y[2500], 0.3, atol=1e-4)
    with AudioStreamWriter(tmp_path / "x.flac", SR) as w:  # other formats: renamed at the end
        w.write(np.zeros(100, np.float32))
        assert not (tmp_path / "x.flac").exists()
    assert sf.info(str(tmp_path / "x.flac")).frames == 100

    # through the CLI: chunks of 20 s, a progress line per chunk without a terminal
    long = tmp_path / "long.wav"
    r = runner.invoke(app, ["--seed", "2", "continue", str(prompt), "-s", "41", "-o", str(long),
                            "--models", str(models), "--continuation-only"])
    assert r.exit_code == 0, r.output
    assert "41 s to make in 3 chunks of 20 s" in r.output and "chunk 3/3" in r.output
    assert sf.info(str(long)).frames == 41 * SR
    # standard output: a WAV header saying "length unknown", then the samples
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "aimusic", "-q", "--seed", "2", "continue", str(prompt),
                        "-s", "0.5", "-o", "-", "--models", str(models), "--continuation-only"],
                       capture_output=True, check=True)
    assert p.stdout[:4] == b"RIFF" and p.stdout[4:8] == b"\xff\xff\xff\xff"
    assert len(p.stdout) == 44 + 2 * round(0.5 * SR)


def test_an_output_too_long_for_its_format_is_refused_before_any_work(models: Path, prompt: Path,
                                                                       tmp_path: Path) -> None:
    msg = fail("continue", str(prompt), "-s", "100000", "-o", str(tmp_path / "huge.wav"),
               "--models", str(models))
    assert "huge.wav" in msg and "write .flac" in msg, msg
    assert not (tmp_path / "huge.wav").exists()
