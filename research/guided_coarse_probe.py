"""Does the coarse LM follow the semantic tokens better with classifier-free guidance?

The oracle probe (``oracle_semantic_probe.py``) showed that the coarse LM renders the
semantic tokens' key but not their rhythm: it uses them weakly. Guidance strengthens that
use at sampling time with no training: the acoustic-only LM (the same codes, no semantic
tokens, trained at the same budget) is the unconditional model, and each coarse token is
drawn from

    log p_g = log p_coarse + (g - 1) (log p_coarse - log p_acoustic)

(renormalised; then the stage's temperature and top-k), i.e. the conditional model with the
semantic tokens' pointwise information counted g times. g = 1 is the plain chain.

The probe runs ``aimusic eval continuation`` with the coarse stage replaced by the guided
one, so its metrics.json compares row by row with any other run on the same clips
(``continuation_compare.py``):

    python research/guided_coarse_probe.py --guidance 3 \
        --uncond research/checkpoints/piano/lm-acoustic.safetensors -- \
        eval continuation data/piano-clips/piano/test --models aimusic/bundled/piano \
        --layout flat --clips 0 --seconds 10 --notes -o runs/guided-3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aimusic.gen import stages as S  # noqa: E402
from aimusic.gen.decode import Decoder  # noqa: E402
from aimusic.lm import layouts as L  # noqa: E402
from aimusic.lm.model import check_window, load_lm, sample  # noqa: E402


def guided_extend(cond: Decoder, uncond: Decoder, ids_c: torch.Tensor, ids_u: torch.Tensor,
                  n: int, g: float, s: S.Sampling, generator: torch.Generator | None,
                  allowed, tick) -> torch.Tensor:
    """``Decoder.generate`` for two models in lockstep: ``ids_c`` [1, Tc] for the
    conditional model, ``ids_u`` [1, Tu] for the unconditional one, the same n new ids
    appended to both; ``allowed`` counts positions of ``ids_c``. Returns ids_c extended."""
    check_window(ids_c.shape[1], n, cond.lm.cfg.max_len)
    check_window(ids_u.shape[1], n, uncond.lm.cfg.max_len)
    cc, cu = cond.lm.new_cache(), uncond.lm.new_cache()
    hc, hu = cond.prefill(ids_c, cc), uncond.prefill(ids_u, cu)
    out = [ids_c]
    for j in range(n):
        tick(1)
        lo, hi = allowed(ids_c.shape[1] + j)
        if hi - lo == 1:
            tok = torch.full((1,), lo, dtype=torch.long)
        else:
            lc = torch.log_softmax(cond.logits(hc, (lo, hi)).float(), -1)
            lu = torch.log_softmax(uncond.logits(hu, (lo, hi)).float(), -1)
            tok = sample(lc + (g - 1) * (lc - lu), s.temperature, s.top_k, s.top_p, generator) + lo
        out.append(tok[:, None])
        if j + 1 < n:
            hc, hu = cond.step(tok, cc), uncond.step(tok, cu)
    return torch.cat(out, 1)


def make_guided_stage(uncond_path: Path, g: float):
    plain = S.coarse_stage
    holder: dict[str, Decoder] = {}

    def coarse_stage(dec, window, semantic, total, coarse, fpt, s, generator=None,
                     use_cache=True, tick=S._no_tick, out=None):
        if semantic is None or g == 1:  # the acoustic layout, or no guidance
            return plain(dec, window, semantic, total, coarse, fpt, s, generator, use_cache,
                         tick, out)
        if "u" not in holder:
            holder["u"] = Decoder(load_lm(uncond_path, "acoustic", next(dec.lm.parameters()).device))
        unc = holder["u"]
        vocab, kc = dec.lm.cfg.layout, dec.lm.cfg.coarse_levels
        src = S._source(semantic)
        codes = coarse[:kc].long().cpu()
        for start, known, end in S.plan_chunks(codes.shape[1] // fpt, total, window,
                                               S.history(window)):
            sem = src.wait(end)[start:end]
            n = sem.shape[0]
            ids_c, _ = L.coarse_sequence(vocab, sem, codes[:, fpt * start:], kc)
            ids_u, _ = L.acoustic_sequence(vocab, codes[:, fpt * start:], kc)
            seq = guided_extend(dec, unc, ids_c[None], ids_u[None], fpt * (end - known) * kc,
                                g, s, generator, L.allowed_coarse(vocab, n, kc), tick)
            new = L.coarse_from_sequence(vocab, seq[0], n, kc)[:, fpt * (known - start):]
            codes = torch.cat([codes, new], 1)
            if out is not None:
                out.extend(new)
        return codes

    return coarse_stage


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: guided_coarse_probe.py --guidance G --uncond LM -- <aimusic args>")
    k = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guidance", type=float, required=True)
    ap.add_argument("--uncond", type=Path, required=True, help="the acoustic-only LM")
    a = ap.parse_args(argv[:k])
    S.coarse_stage = make_guided_stage(a.uncond, a.guidance)
    from aimusic.cli.common import main as cli
    sys.argv = ["aimusic", *argv[k + 1:]]
    cli()
    return 0


if __name__ == "__main__":
    sys.exit(main())
