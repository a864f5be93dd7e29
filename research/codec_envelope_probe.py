"""How much of the 1-4 kHz spectral envelope (where the recognizer finds the words) does a
speech codec give back, and how much could any decoder of its latent give back?

`examples/voice_outputs.py --roundtrip CODEC --keep magnitude --band 1000:4000 --envelope`
shows that the round trip meets the WER target when only that envelope is the
recording's. This probe measures the envelope itself, on the test voices (never trained
on), in the istft head's frames: the log of the power averaged over 150 Hz
(``aimusic.dsp.log_envelope``), per band:

* ``decoded``: the envelope of the codec's round trip (its waveform, re-analysed);
* ``ridge (codes)`` / ``ridge (latent)``: a ridge regression from the quantized (or
  unquantized) latent, +-``--context`` frames, fitted on ``--train-utts`` utterances of the
  training voices: what a linear decoder of the same latent reaches;
* ``mlp (codes)`` (``--mlp-steps N``): a small MLP in place of the ridge, the same inputs;
* ``opus K kbps`` (``--opus K``): Opus's round trip of the same recordings, for scale.

Each row gives R^2 per band (1 - squared error / variance about each bin's mean) over the
test frames within 30 dB of their utterance's loudest (speech, not pauses; over all frames
too, in the JSON) and, in 1-4 kHz, the mean absolute error in nats over the same frames.
The regressions say how much of the envelope lies plainly in the latent; a decoder that
does no better than they do leaves the rest of what its tokens carry unread.

    python research/codec_envelope_probe.py aimusic/bundled/voice/codec.safetensors \\
        --opus 6 --opus 12 -o research/results/codec-envelope-probe.json
"""

from __future__ import annotations

import argparse
import random
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import load_audio, resample
from aimusic.codec.evaluate import opus_roundtrip
from aimusic.codec.model import Codec, load_codec
from aimusic.codec.modules import SpectralDecoder
from aimusic.dsp import log_envelope
from aimusic.fileio import write_json
from aimusic.runtime import configure_threads
from aimusic.voice.evaluate import read_corpus

BANDS = ((0, 1000), (1000, 2500), (2500, 4000), (1000, 4000), (4000, 8000))
WORDS = (1000.0, 4000.0)  # the band that carries the words
LOUD_DB = 30.0  # frames this far under the utterance's loudest (pauses) are not scored


def band_r2(pred: np.ndarray, true: np.ndarray, hz: np.ndarray, lo: float, hi: float) -> float:
    """R^2 of ``pred`` against ``true`` [frames, bins] over the bins in [lo, hi): 1 minus the
    squared error over the squared deviation from each bin's mean over the frames."""
    m = (hz >= lo) & (hz < hi)
    p, t = pred[:, m], true[:, m]
    return float(1 - ((p - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())


def loud_frames(env: np.ndarray, db: float = LOUD_DB) -> np.ndarray:
    """Which frames of one utterance's log envelope [frames, bins] carry power within ``db``
    of its loudest frame's (silences and pauses are left out)."""
    power = np.log(np.exp(2 * env).sum(1))
    return power >= power.max() - db * np.log(10) / 10


class Probe:
    """Envelopes and latents of recordings in ``codec``'s istft frames."""

    def __init__(self, codec: Codec, context: int = 2) -> None:
        if not isinstance(codec.decoder, SpectralDecoder):
            raise SystemExit(f"the probe needs an istft codec (head {codec.cfg.head!r})")
        self.codec, self.head, self.context = codec, codec.decoder, context
        self.sr = codec.cfg.sample_rate
        self.hz = np.arange(self.head.n_fft // 2 + 1) * self.sr / self.head.n_fft

    def envelope(self, x: np.ndarray, frames: int) -> np.ndarray:
        t = torch.from_numpy(x.astype(np.float32))[None, None]
        mag = self.head.analyze(t, frames).abs()
        return log_envelope(mag, self.sr, self.head.n_fft)[0].T.numpy()

    def stacked(self, z: torch.Tensor) -> np.ndarray:
        """Latent [dim, F] -> [F, dim * (2 context + 1)]: each frame with its neighbours."""
        c, F = self.context, z.shape[-1]
        zp = torch.nn.functional.pad(z[None], (c, c), mode="replicate")[0]
        return torch.cat([zp[:, i:i + F] for i in range(2 * c + 1)]).T.numpy()

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x)[None, None]
        z = self.codec.encoder(self.codec.pad(t))
        codes = self.codec.quantizer.encode(z, self.codec.cfg.levels)
        q = self.codec.quantizer.decode(codes)
        frames = z.shape[-1]
        decoded = self.head(q)[0, 0, :x.size].numpy()
        return {"true": self.envelope(x, frames), "decoded": self.envelope(decoded, frames),
                "latent": self.stacked(z[0]), "codes": self.stacked(q[0])}


def ridge(X: np.ndarray, Y: np.ndarray, lam: float = 100.0):
    """Ridge regression on standardized features: returns a predictor X -> Y."""
    mu, sd = X.mean(0), X.std(0) + 1e-6

    def design(A: np.ndarray) -> np.ndarray:
        return np.concatenate([(A - mu) / sd, np.ones((len(A), 1))], 1)

    D = design(X)
    W = np.linalg.solve(D.T @ D + lam * np.eye(D.shape[1]), D.T @ Y)
    return lambda A: design(A) @ W


def mlp(X: np.ndarray, Y: np.ndarray, steps: int, seed: int = 0, width: int = 1024):
    """A two-hidden-layer MLP (``width`` wide, GELU) fitted by Adam on standardized features and
    targets, ``steps`` batches of 512 frames: a nonlinear decoder of the same latent."""
    torch.manual_seed(seed)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    ym, ys = Y.mean(0), Y.std(0) + 1e-6
    Xt = torch.from_numpy((X - mu) / sd).float()
    Yt = torch.from_numpy((Y - ym) / ys).float()
    nn = torch.nn
    net = nn.Sequential(nn.Linear(X.shape[1], width), nn.GELU(), nn.Linear(width, width),
                        nn.GELU(), nn.Linear(width, Y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(Xt), (512,), generator=gen)
        loss = ((net(Xt[i]) - Yt[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    @torch.no_grad()
    def predict(A: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy((A - mu) / sd).float()).numpy() * ys + ym

    return predict


def scores(pred: np.ndarray, true: np.ndarray, loud: np.ndarray, hz: np.ndarray) -> dict:
    """R^2 per band over the loud frames (speech; pauses say nothing of the words) and over
    all frames, and the loud frames' mean absolute error in the words' band."""
    words = (hz >= WORDS[0]) & (hz < WORDS[1])
    mae = np.abs(pred[loud][:, words] - true[loud][:, words]).mean()
    return {"r2": {f"{lo}-{hi}": round(band_r2(pred[loud], true[loud], hz, lo, hi), 4)
                   for lo, hi in BANDS},
            "r2_all_frames": {f"{lo}-{hi}": round(band_r2(pred, true, hz, lo, hi), 4)
                              for lo, hi in BANDS},
            "mae_1000_4000_loud": round(float(mae), 4)}


def run(codec: Codec, corpus: Path, train_utts: int, test_utts: int, opus: list[float],
        context: int, seed: int, mlp_steps: int = 0) -> dict:
    entries, _ = read_corpus(corpus)
    rng = random.Random(seed)
    train = [e for e in entries if e.get("split") == "train"]
    test = [e for e in entries if e.get("split") == "test"]
    if not train or not test:
        raise SystemExit(f"{corpus}: the probe needs train and test utterances in its manifest")
    rng.shuffle(train)
    rng.shuffle(test)
    probe = Probe(codec, context)
    sr = probe.sr
    fit: dict[str, list] = {"latent": [], "codes": [], "true": []}
    for e in train[:train_utts]:
        f = probe(load_audio(e["file"], sr))
        for k in fit:
            fit[k].append(f[k])
    Y = np.concatenate(fit["true"])
    predict = {f"ridge ({k})": ridge(np.concatenate(fit[k]), Y) for k in ("codes", "latent")}
    if mlp_steps:
        predict["mlp (codes)"] = mlp(np.concatenate(fit["codes"]), Y, mlp_steps, seed)
    rows: dict[str, list] = {"true": [], "decoded": [], "loud": []}
    rows.update({k: [] for k in predict})
    rows.update({f"opus {k:g} kbps": [] for k in opus})
    with tempfile.TemporaryDirectory() as tmp:
        for e in test[:test_utts]:
            x = load_audio(e["file"], sr)
            f = probe(x)
            rows["true"].append(f["true"])
            rows["loud"].append(loud_frames(f["true"]))
            rows["decoded"].append(f["decoded"])
            for k, fn in predict.items():
                rows[k].append(fn(f["latent" if "latent" in k else "codes"]))
            x16 = load_audio(e["file"], 16000) if opus else None
            for k in opus:  # Opus at its speech rate (16 kHz), re-analysed at the codec's
                y = resample(opus_roundtrip(x16, 16000, k, Path(tmp)), 16000, sr)
                y = np.pad(y, (0, max(0, x.size - y.size)))[:x.size]
                rows[f"opus {k:g} kbps"].append(probe.envelope(y, len(f["true"])))
    true, loud = np.concatenate(rows.pop("true")), np.concatenate(rows.pop("loud"))
    return {"frames": {"train": len(Y), "test": len(true)},
            "rows": {k: scores(np.concatenate(v), true, loud, probe.hz) for k, v in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("codec", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path("data/speech"))
    ap.add_argument("--train-utts", type=int, default=800,
                    help="Training-voice utterances the ridge regressions are fitted on.")
    ap.add_argument("--test-utts", type=int, default=150, help="Test-voice utterances scored.")
    ap.add_argument("--context", type=int, default=2, help="Latent frames on each side.")
    ap.add_argument("--opus", type=float, action="append", default=[], metavar="KBPS",
                    help="Also score Opus at this bitrate (repeatable; needs opus-tools).")
    ap.add_argument("--mlp-steps", type=int, default=0,
                    help="Also fit a small MLP from the codes (this many Adam steps; 4000 "
                         "take some 10 CPU-minutes): a nonlinear decoder's reach.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path)
    a = ap.parse_args()
    configure_threads()
    result = {"codec": str(a.codec), "corpus": str(a.corpus), "date": date.today().isoformat(),
              "settings": {"train_utts": a.train_utts, "test_utts": a.test_utts,
                           "context": a.context, "seed": a.seed, "mlp_steps": a.mlp_steps},
              **run(load_codec(a.codec), a.corpus, a.train_utts, a.test_utts, a.opus,
                    a.context, a.seed, a.mlp_steps)}
    print(f"{'':16s}" + "".join(f"{lo}-{hi:>5}".rjust(11) for lo, hi in BANDS) + "  MAE 1-4k")
    for k, r in result["rows"].items():
        print(f"{k:16s}" + "".join(f"{v:11.3f}" for v in r["r2"].values())
              + f"  {r['mae_1000_4000_loud']:.3f}")
    if a.out:
        write_json(a.out, result)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
