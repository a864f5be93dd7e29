"""Token LMs: learning, cached decoding equal to full passes, sampling, generation, files."""

import dataclasses

import pytest
import torch

from aimusic.errors import ArtifactError, ConfigError
from aimusic.gen.decode import Decoder
from aimusic.lm import layouts as L
from aimusic.lm.model import (
    PRESETS,
    LMConfig,
    TokenLM,
    load_lm,
    next_token_loss,
    sample,
    save_lm,
)


def tiny(stage: str = "semantic", **kw) -> TokenLM:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["tiny"](), stage=stage, **kw)
    return TokenLM(cfg).eval()


def random_tokens(model: TokenLM, B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    if cfg.streams == 1:
        return torch.randint(0, cfg.vocab, (B, T), generator=g)
    local = torch.randint(0, cfg.codebook_size, (B, T, cfg.streams), generator=g)
    return local + torch.as_tensor(model.stream_offsets)


def test_shapes_and_config_errors() -> None:
    m = tiny("coarse")
    assert m(random_tokens(m, 2, 7)).shape == (2, 7, m.cfg.vocab)
    d = tiny("delay")
    assert d(random_tokens(d, 2, 5)).shape == (2, 5, 8, 64)
    with pytest.raises(ValueError, match=r"\[B, T, 8\]"):
        d(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="exceed the context"):
        m(torch.zeros(1, m.cfg.max_len + 1, dtype=torch.long))
    with pytest.raises(ConfigError, match="unknown LM stage"):
        TokenLM(LMConfig(stage="medium"))
    with pytest.raises(ConfigError, match="heads"):
        TokenLM(LMConfig(dim=30, heads=4))
    assert m.flops_per_token() > 6 * m.num_parameters()


def test_tiny_lm_overfits_a_short_sequence() -> None:
    model = tiny("semantic")
    model.train()
    g = torch.Generator().manual_seed(1)
    sem = torch.randint(0, model.cfg.clusters, (2, 40), generator=g)
    ids, mask = L.semantic_sequence(model.cfg.layout, sem)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        loss = next_token_loss(model(ids), ids, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the floor is 2 ln 2 / 80 = 0.017: after BOS, the first token of either sequence is a coin toss
    assert loss.item() < 0.03
    # and it has learnt the sequences: greedy decoding from their first tokens completes them
    model.eval()
    out = Decoder(model).generate(ids[:, :3], 38, temperature=0, allowed=L.allowed_semantic(model.cfg.layout))
    assert torch.equal(L.semantic_from_sequence(model.cfg.layout, out), sem)


def test_stream_loss_counts_only_the_targets() -> None:
    model = tiny("delay")
    v = model.cfg.layout
    sem = torch.randint(0, v.clusters, (2, 3))
    codes = torch.randint(0, v.codebook_size, (2, v.levels, 9))
    ids, mask = L.delay_sequence(v, sem, codes)
    logits = model(ids)
    loss = next_token_loss(logits, ids, mask, model.stream_offsets)
    # by hand: level-local targets at the marked steps only
    local = ids[:, 1:] - torch.as_tensor(model.stream_offsets)
    pick = mask[:, 1:]
    want = torch.nn.functional.cross_entropy(logits[:, :-1][pick], local[pick])
    assert torch.allclose(loss, want, atol=1e-6)
    assert abs(loss.item() - torch.log(torch.tensor(64.0)).item()) < 0.5  # near uniform at init


@pytest.mark.parametrize("stage", ["coarse", "delay"])
def test_cached_decoding_equals_a_full_pass(stage: str) -> None:
    model = tiny(stage)
    tokens = random_tokens(model, 3, 23)
    full = model(tokens)
    cache = model.new_cache()
    parts = [model(tokens[:, :9], cache)]  # prefill
    parts += [model(tokens[:, 9:13], cache)]  # a chunk after the cache: causal mask with offset
    parts += [model(tokens[:, t:t + 1], cache) for t in range(13, 23)]  # then one at a time
    assert cache.length == 23
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    cache.trim(9)  # roll back and take another branch
    assert torch.allclose(model(tokens[:, 9:11], cache), full[:, 9:11], atol=1e-5)


@pytest.mark.parametrize("stage", ["coarse", "delay"])
def test_generate_with_and_without_cache_samples_the_same_tokens(stage: str) -> None:
    model = tiny(stage)
    v = model.cfg.layout
    n_sem, frames, kc = 4, 12, model.cfg.coarse_levels
    sem = torch.randint(0, v.clusters, (2, n_sem))
    if stage == "coarse":
        prompt = L.coarse_sequence(v, sem, torch.zeros(2, kc, 0, dtype=torch.long), kc)[0]
        allowed = L.allowed_coarse(v, n_sem, kc)
        n = frames * kc
    else:
        prompt = L.delay_sequence(v, sem, torch.zeros(2, v.levels, 0, dtype=torch.long))[0][:, :n_sem + 1]
        allowed = L.allowed_delay(v, n_sem, frames)
        n = frames + v.levels - 1
    runs = [Decoder(model).generate(prompt, n, temperature=1.0, top_k=20, top_p=0.95, allowed=allowed,
                     generator=torch.Generator().manual_seed(7), use_cache=c) for c in (True, False)]
    assert torch.equal(runs[0], runs[1])
    # the tokens respect the layout: they decode back to codes
    if stage == "coarse":
        codes = L.coarse_from_sequence(v, runs[0], n_sem, kc)
        assert codes.shape == (2, kc, frames)
    else:
        codes = L.delay_from_sequence(v, runs[0], n_sem)
        assert codes.shape == (2, v.levels, frames)
        assert torch.equal(L.delay_sequence(v, sem, codes)[0], runs[0])  # PAD corners forced


def test_sample_properties() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 12, generator=g)
    best = logits.argmax(-1)
    assert torch.equal(sample(logits, temperature=0), best)
    assert torch.equal(sample(logits, top_k=1, generator=g), best)
    top3 = logits.topk(3, -1).indices
    draws = sample(logits, temperature=2.0, top_k=3, generator=g)
    assert (draws[:, None] == top3).any(-1).all()
    # top_p keeps the smallest set of most likely ids whose mass reaches p
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    many = sample(p.log().expand(4000, 4), top_p=0.7, generator=g)
    assert set(many.tolist()) == {0, 1}
    many = sample(p.log().expand(4000, 4), top_p=0.5 - 1e-4, generator=g)
    assert set(many.tolist()) == {0}
    many = sample(p.log().expand(4000, 4), top_p=0.9, generator=g)
    assert set(many.tolist()) == {0, 1, 2}
    assert abs((many == 0).float().mean().item() - 0.5 / 0.95) < 0.04  # renormalized, not flattened


def test_save_load_round_trip(tmp_path) -> None:
    model = tiny("delay")
    path = save_lm(model, tmp_path / "lm-delay.safetensors", depends={"codec": "ab" * 8},
                   extra={"steps": 3})
    back = load_lm(path, stage="delay")
    tokens = random_tokens(model, 2, 6)
    assert torch.equal(back(tokens), model(tokens))
    assert back.cfg == model.cfg and back.depends == {"codec": "ab" * 8}
    with pytest.raises(ArtifactError, match="is the delay LM, expected the fine LM"):
        load_lm(path, stage="fine")


def test_missing_model_names_the_command(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="aimusic train-lm"):
        load_lm(tmp_path / "lm-coarse.safetensors", stage="coarse")
