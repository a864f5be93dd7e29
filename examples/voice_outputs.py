#!/usr/bin/env python
"""Speech for `aimusic eval voice`: continuations and `speak` outputs for the test voices.

    python examples/voice_outputs.py --corpus data/speech --models voice/models --out voice/outputs

For each test speaker (the corpus's "test" split: voices never trained on; or the voices
``--voices`` names, from their held-out "val" utterances), ``--items`` of its utterances
of at least 3.5 s:

* continuation: the first ``--prompt-seconds`` (3) continued by ``--seconds`` (4), with
  ``--voice-match`` as `speak`'s (``continue --voice-match``); the
  continuation alone is written, listed with the utterance as its prompt (whose voice it
  must keep);
* speech: the utterance's own text spoken with the *next* utterance of the same speaker as
  the voice prompt, listed with that prompt and the text, so `eval voice` compares its
  word error rate with the real recording of the same sentence.

Writes OUT/continue-*.wav, OUT/speak-*.wav, OUT/outputs.jsonl and OUT/timings.json (speed of
`speak`: seconds of speech per second of wall time, and for 10-word sentences).

``--oracle-semantic`` renders the recordings' own semantic tokens instead of the LMs'
(the utterance's next ones for a continuation, the sentence's whole recording for speech,
in the voice of the other utterance): what is said is right, and only the coarse and fine
LMs and voice matching are judged.

``--roundtrip CODEC`` (no ``--models``) writes instead OUT/rt-*.wav: the real recordings of
the sentences `speak` would say, encoded and decoded by that codec with no LM, listed as
`speak` outputs (same prompt, same text), so `eval voice` scores what the codec alone keeps.
``--opus KBPS`` does the same through Opus at that bitrate (opusenc, hard CBR): OUT/opus-*.wav.
Where a round trip loses the voice: ``--levels N`` decodes the first N levels (0: the
encoder's latent, unquantized); with an inverse-STFT codec ``--keep magnitude`` (or
``phase``) keeps the recording's own STFT magnitudes (phases) and takes only the other from
the decoder, and ``--keep magnitude-alone`` takes no codec at all: the recording's
magnitudes with phases found by Griffin-Lim from random ones, what the judges hear in the
magnitudes alone. With ``--keep magnitude``, ``--band LO:HI`` keeps the recording's
magnitudes in that band only, and ``--envelope`` its spectral envelope only (no harmonics):
where in the spectrum the words and the voice are lost.

``--prompt-eq`` equalizes every output to undo how the codec colours its prompt's voice
(``voice.prompt.codec_eq``: the prompt against the codec's rendering of it); it is the default
for continuations and `speak` outputs, as `speak`'s, and off for round trips unless asked
for. In a round trip the prompt is the voice `speak` would hear (the next utterance's first
``--prompt-seconds``, through the same round trip), never the sentence itself.
``--voice-utterances N``: the voice `speak` hears, and a round trip's EQ is measured on,
is the next N utterances, whole, instead of the next one's first ``--prompt-seconds``
(a longer voice recording; never the sentence).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import load_audio, save_audio
from aimusic.codec.modules import SpectralDecoder
from aimusic.dsp import equalize, log_envelope, prompt_eq
from aimusic.fileio import write_json
from aimusic.gen import load_chain
from aimusic.gen.continuation import continue_audio
from aimusic.lm.model import load_lm
from aimusic.runtime import configure_threads
from aimusic.voice.prompt import PromptVoice
from aimusic.voice.tts import PROMPT_EQ, READING_FILE, SPEAK_FINE, VOICE_MATCH, speak_text

KEEP = ("magnitude", "phase", "magnitude-alone")


def parse_band(text: str) -> tuple[float, float]:
    """``--band``'s LO:HI in Hz -> (LO, HI)."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give LO:HI in Hz, e.g. 1000:4000") from None
    if not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LO < HI")
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("data/speech"))
    ap.add_argument("--models", type=Path)
    ap.add_argument("--roundtrip", type=Path, metavar="CODEC",
                    help="Round trips of the recordings through this codec, no LMs.")
    ap.add_argument("--levels", type=int, metavar="N",
                    help="With --roundtrip: decode only the first N codec levels (0: the "
                         "encoder's latent unquantized, where the voice is lost if not in "
                         "the quantizer). Default: all.")
    ap.add_argument("--keep", choices=KEEP,
                    help="With --roundtrip of an istft codec: keep the recording's own STFT "
                         "magnitudes or phases (diagnosis; see above).")
    ap.add_argument("--band", metavar="LO:HI", type=parse_band,
                    help="With --keep magnitude: keep the recording's magnitudes between LO and "
                         "HI Hz only, the codec's elsewhere.")
    ap.add_argument("--envelope", action="store_true",
                    help="With --keep magnitude: keep the recording's spectral envelope only "
                         "(its power averaged over 150 Hz: no harmonics).")
    ap.add_argument("--opus", type=float, metavar="KBPS",
                    help="Round trips through Opus at this bitrate instead (at least 6).")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--items", type=int, default=12, help="Outputs per test voice and task.")
    ap.add_argument("--voices", metavar="NAME,...",
                    help="Judge these voices' held-out utterances (the corpus's val split) "
                         "instead of the test voices: training voices, to choose a setting "
                         "without looking at the test voices.")
    ap.add_argument("--prompt-seconds", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-speak", action="store_true", help="Continuations only.")
    ap.add_argument("--no-continue", action="store_true", help="Speech (speak) only.")
    ap.add_argument("--oracle-semantic", action="store_true",
                    help="Diagnosis: the recordings' own semantic tokens in place of the "
                         "semantic and reading LMs' (the next ones for a continuation, the "
                         "sentence's for speech). Do the acoustic LMs keep the voice and the "
                         "words when what is said is right?")
    ap.add_argument("--fine", action=argparse.BooleanOptionalAction, default=SPEAK_FINE,
                    help="Run the fine stage (--no-fine: the coarse levels alone), both tasks.")
    ap.add_argument("--voice-match", type=int, default=VOICE_MATCH, metavar="K",
                    help="Voice matching for both tasks (0: off; default %(default)s, speak's).")
    ap.add_argument("--prompt-eq", action=argparse.BooleanOptionalAction, default=None,
                    help="Equalize each output to undo how the codec (or Opus) colours its "
                         "prompt's voice (default: on for both tasks, as speak's; off for "
                         "round trips).")
    ap.add_argument("--temperature", type=float, nargs="+", metavar="T",
                    help="Sampling temperature, once or per stage (semantic, coarse, fine), as "
                         "speak's --temperature: for speak the semantic stage's is the reading "
                         "LM's (default 1.0 0.8 0.6).")
    ap.add_argument("--top-k", type=int, nargs="+", metavar="K",
                    help="Top-k, once or per stage, as --temperature (default 250; 0: off).")
    ap.add_argument("--voice-utterances", type=int, default=0, metavar="N",
                    help="The voice of speak (and of a round trip's --prompt-eq): the next N "
                         "utterances of the speaker, whole, instead of the next one's first "
                         "--prompt-seconds (a longer voice recording; never the sentence).")
    a = ap.parse_args()
    if a.prompt_eq is None:
        a.prompt_eq = PROMPT_EQ and a.roundtrip is None and a.opus is None
    configure_threads()  # AIMUSIC_THREADS, as the CLI does
    if a.no_speak and a.no_continue:
        raise SystemExit("--no-speak and --no-continue leave nothing to make")
    if (a.levels is not None or a.keep is not None) and a.roundtrip is None:
        raise SystemExit("--levels and --keep diagnose a codec: give --roundtrip CODEC")
    if (a.band is not None or a.envelope) and a.keep != "magnitude":
        raise SystemExit("--band and --envelope choose what --keep magnitude keeps")

    entries = [json.loads(ln) for ln in (a.corpus / "manifest.jsonl").read_text().splitlines()]
    by_speaker = judged_utterances(entries, a.prompt_seconds + 0.5,
                                   a.voices.split(",") if a.voices else None, a.corpus)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.roundtrip is not None or a.opus is not None:
        return roundtrips(a, by_speaker)
    if a.models is None:
        raise SystemExit("give --models (or --roundtrip CODEC, or --opus KBPS)")
    chain = load_chain(a.models, "flat")
    sampling = chain.sampling(a.temperature, a.top_k)
    lm = None if a.no_speak or a.oracle_semantic else load_lm(a.models / READING_FILE, "reading")
    sr = chain.sample_rate
    listing, speed = [], []
    for speaker, utts in sorted(by_speaker.items()):
        utts = utts[:a.items + 1]
        for k, e in enumerate(utts[:a.items]):
            audio = load_audio(a.corpus / e["path"], sr)
            seed = a.seed + k
            cut = int(a.prompt_seconds * sr)
            if not a.no_continue:
                if a.oracle_semantic:
                    said = render_semantic(chain, audio[:cut],
                                           audio[cut:cut + int(a.seconds * sr)], seed,
                                           a.voice_match, a.fine, a.prompt_eq, sampling)
                else:
                    said = continue_audio(chain, audio[:cut], a.seconds,
                                          prompt_seconds=a.prompt_seconds,
                                          continuation_only=True, seed=seed,
                                          sampling=sampling, fine=a.fine,
                                          voice=PromptVoice.of(chain, a.voice_match, a.prompt_eq),
                                          )["audio"]
                name = f"continue-{speaker}-{k:03d}.wav"
                save_audio(a.out / name, said, sr)
                listing.append({"path": name, "task": "continue", "speaker": speaker,
                                "prompt": e["path"]})
            if a.no_speak or not e.get("text") or len(utts) < 2:
                continue
            voice_e = utts[(k + 1) % len(utts)]
            voice = voice_of(a, utts, k, sr)
            name = f"speak-{speaker}-{k:03d}.wav"
            listing.append({"path": name, "task": "speak", "speaker": speaker,
                            "prompt": voice_e["path"], "text": e["text"]})
            if lm is None:  # --oracle-semantic: the recording's own tokens, in the voice
                save_audio(a.out / name,
                           render_semantic(chain, voice, audio, seed, a.voice_match, a.fine,
                                           a.prompt_eq, sampling), sr)
                continue
            t0 = time.perf_counter()
            r = speak_text(chain, lm, e["text"], voice, voice_name=voice_e["path"], seed=seed,
                           sampling=sampling, voice_match=a.voice_match, fine=a.fine, eq=a.prompt_eq)
            wall = time.perf_counter() - t0
            save_audio(a.out / name, r["audio"], sr)
            speed.append({"words": len(e["text"].split()), "seconds": r["seconds"], "wall": wall})
            print(f"{name}: {r['seconds']:.2f} s of speech in {wall:.2f} s  {e['text']!r}",
                  flush=True)
    (a.out / "outputs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in listing))
    ten = [s for s in speed if 8 <= s["words"] <= 12]
    write_json(a.out / "timings.json", {
        "speak": speed,
        "speech_per_wall": (sum(s["seconds"] for s in speed) / max(1e-9, sum(s["wall"] for s in speed))
                            if speed else None),
        "ten_word_wall_over_duration": (float(np.median([s["wall"] / s["seconds"] for s in ten]))
                                        if ten else None),
    })
    print(f"{len(listing)} outputs in {a.out / 'outputs.jsonl'}")


def voice_of(a: argparse.Namespace, utts: list[dict], k: int, sr: int) -> np.ndarray:
    """The voice for sentence ``k`` of a speaker's ``utts``: the next utterance's first
    ``--prompt-seconds``, or with ``--voice-utterances N`` the next N utterances whole;
    never sentence ``k`` itself."""
    if not a.voice_utterances:
        return load_audio(a.corpus / utts[(k + 1) % len(utts)]["path"], sr)[:int(a.prompt_seconds * sr)]
    n = min(a.voice_utterances, len(utts) - 1)
    return np.concatenate([load_audio(a.corpus / utts[(k + 1 + i) % len(utts)]["path"], sr)
                           for i in range(n)])


def judged_utterances(entries: list[dict], min_seconds: float, voices: list[str] | None,
                      corpus: Path) -> dict[str, list[dict]]:
    """The manifest's utterances of at least ``min_seconds`` to judge, by speaker: the test
    split's, or the named ``voices``' held-out (val split) ones."""
    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        if e.get("duration", 0) < min_seconds:
            continue
        if (e.get("split") == "val" and e["speaker"] in voices) if voices else e.get("split") == "test":
            by_speaker[e["speaker"]].append(e)
    missing = sorted(set(voices or ()) - set(by_speaker))
    if missing:
        raise SystemExit(f"{corpus}: no val utterances of {min_seconds:g} s or more for "
                         f"{', '.join(missing)}")
    if not by_speaker:
        raise SystemExit(f"{corpus}: no test utterances of {min_seconds:g} s or more")
    return dict(by_speaker)


def render_semantic(chain, prompt: np.ndarray, source: np.ndarray, seed: int,
                    voice_match: int, fine: bool, eq: bool, sampling: dict) -> np.ndarray:
    """``source``'s own semantic tokens rendered by the coarse and fine LMs after
    ``prompt`` (as `speak` renders the reading LM's): what is said is right by construction."""
    from aimusic.gen.chain import encode_prompt, sample_tokens
    from aimusic.gen.continuation import render

    sem, codes = encode_prompt(chain, prompt, prompt.size // chain.token_samples)
    real = torch.from_numpy(chain.semantic.tokens(np.ascontiguousarray(source))).long()
    _, new, _ = sample_tokens(chain, sem, codes, real.numel(), sampling,
                              seed=seed, given=real, fine=fine)
    y = render(chain, codes, new, PromptVoice.of(chain, voice_match, eq), prompt)
    return y[:source.size]


def roundtrips(a: argparse.Namespace, by_speaker: dict[str, list[dict]]) -> None:
    """The recordings `speak` is judged against, through the codec alone (or Opus)."""
    import tempfile

    from aimusic.codec.evaluate import opus_roundtrip
    from aimusic.codec.model import load_codec

    if a.opus is not None:
        sr, prefix, via = 16000, "opus", f"Opus at {a.opus:g} kbps"
        eq_fft = 1280  # --prompt-eq's window: 80 ms, as the speech codec's

        def trip(x: np.ndarray) -> np.ndarray:
            with tempfile.TemporaryDirectory() as tmp:
                return opus_roundtrip(x, sr, a.opus, Path(tmp))
    else:
        codec = load_codec(a.roundtrip)
        sr, prefix, via = codec.cfg.sample_rate, "rt", str(a.roundtrip)
        eq_fft = 4 * codec.cfg.hop  # as voice.prompt.codec_eq's
        if a.levels is not None:
            if not 0 <= a.levels <= codec.cfg.levels:
                raise SystemExit(f"--levels {a.levels}: {a.roundtrip} has levels 1 to "
                                 f"{codec.cfg.levels} (or 0, unquantized)")
            via += " (unquantized)" if a.levels == 0 else f" ({a.levels} levels)"
        head = codec.decoder
        if a.keep is not None:
            if not isinstance(head, SpectralDecoder):
                raise SystemExit(f"--keep needs an istft codec; {a.roundtrip} has head "
                                 f"{codec.cfg.head!r}")
            via += f", the recording's {a.keep.replace('-', ' ')}"
        band = a.band
        if band is not None:
            via += f" from {band[0]:g} to {band[1]:g} Hz"
        if a.envelope:
            via += " (envelope only)"

        @torch.no_grad()
        def trip(x: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(x)[None, None]
            if a.levels == 0:
                z = codec.encoder(codec.pad(t))
            else:
                z = codec.quantizer.decode(codec.encode(t, a.levels))
            if a.keep is None:
                y = head(z)
            else:
                log_mag, phase = head.spectrum(z)
                true = head.analyze(t, phase.shape[-1])
                true_log_mag = true.abs().clamp_min(1e-7).log()
                if a.keep == "magnitude":
                    kept = true_log_mag
                    if a.envelope:  # the envelope alone: power averaged over 150 Hz
                        kept = log_envelope(true.abs(), sr, head.n_fft)
                    if band is not None:
                        hz = torch.arange(kept.shape[1]) * sr / head.n_fft
                        inside = ((hz >= band[0]) & (hz < band[1]))[None, :, None]
                        kept = torch.where(inside, kept, log_mag)
                    y = head.synthesize(kept, phase)
                elif a.keep == "phase":
                    y = head.synthesize(log_mag, torch.angle(true))
                else:
                    y = griffin_lim(head, true.abs(), seed=a.seed)
            return y[0, 0, :t.shape[-1]].numpy()
    listing = []
    for speaker, utts in sorted(by_speaker.items()):
        utts = utts[:a.items + 1]
        for k, e in enumerate(utts[:a.items]):
            if not e.get("text") or len(utts) < 2:
                continue
            y = trip(load_audio(a.corpus / e["path"], sr))
            voice_e = utts[(k + 1) % len(utts)]
            if a.prompt_eq:
                voice = voice_of(a, utts, k, sr)
                y = equalize(y, prompt_eq(voice, trip(voice), sr, eq_fft))
            name = f"{prefix}-{speaker}-{k:03d}.wav"
            save_audio(a.out / name, y, sr)
            listing.append({"path": name, "task": "speak", "speaker": speaker,
                            "prompt": voice_e["path"], "text": e["text"]})
    (a.out / "outputs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in listing))
    eq = ", equalized to the voice (--prompt-eq)" if a.prompt_eq else ""
    print(f"{len(listing)} round trips through {via}{eq} in {a.out / 'outputs.jsonl'}")


def griffin_lim(head: SpectralDecoder, mag: torch.Tensor, iters: int = 32,
                seed: int = 0) -> torch.Tensor:
    """Audio [B, 1, F * hop] whose STFT in ``head``'s frames has magnitudes near ``mag``
    [B, bins, F]: Griffin-Lim's iterations from random phases."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(mag.shape, generator=g) * 2 * torch.pi
    for _ in range(iters):
        y = head.synthesize(mag.clamp_min(1e-7).log(), phase)
        phase = torch.angle(head.analyze(y, mag.shape[-1]))
    return head.synthesize(mag.clamp_min(1e-7).log(), phase)


if __name__ == "__main__":
    main()
