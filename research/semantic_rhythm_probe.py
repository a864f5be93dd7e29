"""Do the semantic tokens carry the rhythm, or only the notes?

The oracle probe rendered the truth's own semantic tokens through the coarse LM and got the
truth's key back but not its rhythm (rhythm -0.07, the truth through the codec 0.98). Either
the coarse LM ignores when the tokens change, or the tokens do not say when a note is
struck (a chord held and a chord struck again give the same pitch content). This probe asks
the tokens alone, on the true continuations of the evaluation's clips:

- ``onset~sem_change``: Pearson correlation, at 25 frames/s, of the audio's onset strength
  (``semantic.features.onset_envelope``, the coherence measure's, pooled) with "the token
  changed here" (0/1);
- ``rhythm_sem_changes``: the coherence rhythm measure computed on the token-change signal
  instead of the onset envelope: the agreement of its autocorrelation over lags 0.15-2 s
  with the *prompt's* audio onset autocorrelation. Compare it with the truth's own
  (``rhythm_truth``, audio against audio) and the floor's (``rhythm_other``, the next
  clip's audio);
- ``rhythm_onset_bits``: the same for ``semantic.features.onset_flags`` (what a model with
  ``onsets`` adds to its tokens), ``onset_bits_per_s`` their rate.

The same is done for codec level 0 (75 frames/s, pooled to 25 by "any change").

    python research/semantic_rhythm_probe.py data/piano-clips/piano/test \
        --models aimusic/bundled/piano --out research/results/.../semantic-rhythm.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aimusic.audio import list_audio_files  # noqa: E402
from aimusic.codec.stream import encode_stream  # noqa: E402
from aimusic.gen import coherence as C  # noqa: E402
from aimusic.gen.chain import load_chain  # noqa: E402
from aimusic.gen.evaluate import load_clips  # noqa: E402
from aimusic.semantic.features import onset_envelope, onset_flags  # noqa: E402


def acf_of(signal: np.ndarray, rate: float) -> np.ndarray:
    """coherence's lag range at ``rate`` frames/s, resampled to 100/s so it lines up with
    the audio's ACF."""
    lo, hi = round(C.LAGS[0] * rate), round(C.LAGS[1] * rate)
    k = max(1, round(0.5 * rate))  # the local mean removed, as coherence does
    s = signal - np.convolve(signal, np.ones(k) / k, "same")
    r = C._acf(s, lo, hi)
    lags = np.arange(lo, hi) / rate
    want = np.arange(round(C.LAGS[0] / C.HOP_SECONDS), round(C.LAGS[1] / C.HOP_SECONDS)) * C.HOP_SECONDS
    return np.interp(want, lags, r)


def pooled(x: np.ndarray, k: int) -> np.ndarray:
    n = x.size // k
    return x[:n * k].reshape(n, k).sum(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--prompt-seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    chain = load_chain(a.models, "flat")
    sr, hop = chain.sample_rate, chain.token_samples
    rate = sr / hop
    files = [f for p in a.inputs for f in list_audio_files(p)]
    items, _ = load_clips(files, sr, a.prompt_seconds, a.seconds, 0.0, a.clips)
    rows = []
    for i, clip in enumerate(items):
        fp = C.features(clip.prompt, sr)
        ft = C.features(clip.truth, sr)
        other = C.features(items[(i + 1) % len(items)].truth, sr)
        x = np.asarray(clip.truth, np.float32)
        sem = chain.semantic.tokens(x)
        codes, _ = encode_stream(chain.codec, iter([x]), 1)
        c0 = codes[0].numpy()
        fpt = chain.frames_per_token
        sem_change = np.r_[0, (np.diff(sem) != 0)].astype(float)
        c0_change = pooled(np.r_[0, (np.diff(c0) != 0)].astype(float), fpt)
        onset = pooled(onset_envelope(torch.from_numpy(x), sr).double().numpy(),
                       round(1 / (C.HOP_SECONDS * rate)))
        bits = onset_flags(torch.from_numpy(x)[None], sr, hop)[0].double().numpy()
        n = min(onset.size, sem_change.size, c0_change.size)
        row = {"name": clip.name,
               "sem_change_rate": float(sem_change.mean()),
               "c0_change_rate": float(c0_change.mean() / fpt),
               "onset~sem_change": C._pearson(onset[:n], sem_change[:n]),
               "onset~c0_change": C._pearson(onset[:n], c0_change[:n]),
               "rhythm_truth": C._pearson(fp.acf, ft.acf),
               "rhythm_other": C._pearson(fp.acf, other.acf),
               "rhythm_sem_changes": C._pearson(fp.acf, acf_of(sem_change, rate)),
               "rhythm_c0_changes": C._pearson(fp.acf, acf_of(c0_change, rate)),
               "rhythm_onsets_25": C._pearson(fp.acf, acf_of(onset, rate)),
               "onset_bits_per_s": float(bits.mean() * rate),
               "rhythm_onset_bits": C._pearson(fp.acf, acf_of(bits, rate)),
               "rhythm_bits_or_change": C._pearson(
                   fp.acf, acf_of(np.maximum(bits[:n], sem_change[:n]), rate))}
        rows.append(row)
        print(f"{i + 1}/{len(items)} " + " ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "name"),
              flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "name"}
    print("mean: " + json.dumps({k: round(v, 3) for k, v in mean.items()}))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"models": str(a.models), "mean": mean, "clips": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
