"""Does the codec's encoder keep who speaks, and does its decoder give it back?

The speaker judges take the speech codec's round trip of the test voice `rms` for the
training voice `awb`, with no LM involved; `examples/voice_outputs.py --roundtrip --keep`
shows the voice is lost in the log magnitudes the istft head predicts from the latent,
not in the quantizer or the phases. This probe asks which half of the codec loses it. For
each voice of a speech corpus (its manifest's first ``--per-voice`` utterances, as `aimusic
eval voice` chooses them) it enrols the first ``--enroll`` utterances and identifies the
first ``--seconds`` of each other one as the enrolled voice with the nearest mean
(cosine), from three representations, each pooled as its mean and standard deviation
over frames and centred on the enrolled utterances' mean:

* ``latent``: the encoder's latent (unquantized), what the decoder is given;
* ``recording mel``: ``--mels`` (40) mel bands (to 8 kHz) of the recording's STFT in the istft head's
  frames, the judge's kind of input;
* ``decoded mel``: the same bands of the magnitudes the istft head predicts from the latent.

It is a crude classifier, not the judge; compared between representations it says where
information about the voice stops. Chance is 1 / voices.

    python research/codec_speaker_probe.py aimusic/bundled/voice/codec.safetensors \\
        --corpus data/speech -o research/results/codec-speaker-probe.json
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import load_audio
from aimusic.codec.model import Codec, load_codec
from aimusic.codec.modules import SpectralDecoder
from aimusic.fileio import write_json
from aimusic.runtime import configure_threads
from aimusic.voice.evaluate import read_corpus

KINDS = ("latent", "recording mel", "decoded mel")


def pooled(frames: torch.Tensor) -> np.ndarray:
    """[D, F] -> the mean and standard deviation of each row over frames, [2D]."""
    return torch.cat([frames.mean(1), frames.std(1)]).double().numpy()


def identify(enrolled: dict[str, list[np.ndarray]], queries: dict[str, list[np.ndarray]],
             watch: tuple[str, ...] = ()) -> dict:
    """Nearest enrolled mean (cosine, after centring on the enrolled vectors' mean) for
    every query: the accuracy, and for the voices in ``watch`` what each of
    their queries was taken for."""
    allv = np.stack([v for vs in enrolled.values() for v in vs])
    # centred on the enrolled mean, not scaled per feature: a feature nearly constant over
    # the enrolled vectors (an always-silent band) must not weigh as much as one that varies
    mu = allv.mean(0)
    names = sorted(enrolled)
    cents = np.stack([np.mean([v - mu for v in enrolled[s]], 0) for s in names])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    hits, taken = [], {}
    for s in names:
        for q in queries.get(s, []):
            v = q - mu
            got = names[int(np.argmax(cents @ (v / np.linalg.norm(v))))]
            hits.append(got == s)
            if s in watch:
                taken.setdefault(s, Counter())[got] += 1
    return {"id_accuracy": round(float(np.mean(hits)), 4) if hits else None,
            "queries": len(hits), "chance": round(1 / len(names), 4),
            "taken_for": {s: dict(c.most_common()) for s, c in taken.items()}}


class Features:
    """The three pooled representations of one recording through ``codec`` (istft head)."""

    def __init__(self, codec: Codec, n_mels: int = 40, fmax: float = 8000.0) -> None:
        import librosa

        if not isinstance(codec.decoder, SpectralDecoder):
            raise SystemExit(f"the probe needs an istft codec (head {codec.cfg.head!r})")
        self.codec, self.head = codec, codec.decoder
        self.fb = torch.from_numpy(librosa.filters.mel(
            sr=codec.cfg.sample_rate, n_fft=self.head.n_fft, n_mels=n_mels, fmax=fmax)).float()

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x)[None, None]
        z = self.codec.encoder(self.codec.pad(t))[0]
        true = self.head.analyze(t, z.shape[-1])[0].abs()
        log_mag, _ = self.head.spectrum(z[None])

        def mel(mag: torch.Tensor) -> torch.Tensor:
            return (self.fb @ mag).clamp_min(1e-4).log()

        return {"latent": pooled(z), "recording mel": pooled(mel(true)),
                "decoded mel": pooled(mel(log_mag[0].exp()))}


def probe(codec: Codec, corpus: Path, per_voice: int = 10, enroll: int = 3,
          seconds: float = 3.0, n_mels: int = 40) -> dict:
    entries, _ = read_corpus(corpus)
    chosen: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        if len(chosen[e["speaker"]]) < per_voice:
            chosen[e["speaker"]].append(e)
    tests = tuple(sorted({e["speaker"] for e in entries if e.get("split") == "test"}))
    feats = Features(codec, n_mels)
    sr = codec.cfg.sample_rate
    enrolled: dict[str, dict[str, list]] = {k: defaultdict(list) for k in KINDS}
    queries: dict[str, dict[str, list]] = {k: defaultdict(list) for k in KINDS}
    for s, es in chosen.items():
        for i, e in enumerate(es):
            f = feats(load_audio(e["file"], sr, duration=None if i < enroll else seconds))
            for k in KINDS:
                (enrolled if i < enroll else queries)[k][s].append(f[k])
    return {k: identify(enrolled[k], queries[k], tests) for k in KINDS} | {
        "voices": len(chosen), "test_voices": list(tests)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("codec", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path("data/speech"))
    ap.add_argument("--per-voice", type=int, default=10)
    ap.add_argument("--enroll", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--mels", type=int, default=40, help="Mel bands of the two mel kinds.")
    ap.add_argument("-o", "--out", type=Path)
    a = ap.parse_args()
    configure_threads()
    result = {"codec": str(a.codec), "corpus": str(a.corpus), "date": date.today().isoformat(),
              "settings": {"per_voice": a.per_voice, "enroll": a.enroll, "seconds": a.seconds,
                           "mels": a.mels},
              **probe(load_codec(a.codec), a.corpus, a.per_voice, a.enroll, a.seconds, a.mels)}
    for k in KINDS:
        r = result[k]
        print(f"{k:14s} ID {r['id_accuracy']:.3f} of {r['queries']} (chance {r['chance']:.3f}); "
              + "; ".join(f"{s} -> {c}" for s, c in r["taken_for"].items()))
    if a.out:
        write_json(a.out, result)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
