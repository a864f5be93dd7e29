"""``aimusic eval continuation``: continue the first seconds of held-out clips and measure
how well each continuation keeps the prompt's harmony, rhythm and sound (``coherence``).

Per clip (leading silence skipped, then ``offset`` seconds): the first ``prompt_seconds``
are the prompt, the next ``seconds`` the truth. Rows of the report:

- ``truth``: the true continuation, the ceiling (coherence 1 by definition);
- ``floor``: the same stretch of three other clips, averaged (coherence 0);
- ``codec``: the truth through the codec (encode, decode): what a perfect LM could reach
  with this codec's sound;
- one row per layout continued (``flat``, ``acoustic``, ``delay``): generated;
- with ``notes``: the note judge (:mod:`aimusic.gen.notes`, basic-pitch) transcribes the
  prompt and every row, and reports key agreement, onsets per second, the share of frames
  where a note sounds and mean note confidence, with one more row, ``other``: another
  clip's truth judged against this prompt;
- with ``constructed``: continuations built to be wrong, to check the measures: a loop of
  the prompt, loudness-matched white noise, silence, the truth pitch-shifted +3 semitones,
  the truth time-stretched 1.3x (faster), and a drone: noise with the prompt's long-term
  spectrum (each bin's mean magnitude), at the truth's loudness, which is what a
  continuation that only imprints the prompt's sound scores. ``BREAKS`` says what each
  must lose.

Writes ``metrics.json``, a spectrogram PNG per clip and continuation (the seam marked),
the audio (prompt joined to each continuation) and ``report.html``.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aimusic.errors import AimusicError
from aimusic.gen import coherence as C

FORMAT = "aimusic.eval.continuation/1"
FLOOR_CLIPS = 3  # other clips averaged into each clip's floor
STRETCH = 1.3
SHIFT = 3  # semitones
CASES = ("loop", "noise", "silence", f"shift+{SHIFT}", f"stretch{STRETCH:g}", "drone")
# what each constructed case must lose, as the issue and the tests say
BREAKS = {"loop": ("repetition",), "noise": C.MEASURES, "silence": C.MEASURES,
          f"shift+{SHIFT}": ("harmony",), f"stretch{STRETCH:g}": ("rhythm",),
          "drone": ("rhythm",)}


@dataclass
class Clip:
    name: str
    source: str
    start: float  # seconds into the file where the prompt starts
    prompt: np.ndarray
    truth: np.ndarray
    after: np.ndarray  # audio after the prompt, up to STRETCH * seconds + 1 s


def lead_silence(x: np.ndarray, sr: int, db: float = -40.0) -> int:
    """Samples before the first 50 ms block louder than ``db`` dBFS (0 if none is)."""
    n = max(1, sr // 20)
    blocks = x[:x.size // n * n].reshape(-1, n)
    loud = np.flatnonzero(10 * np.log10((blocks.astype(np.float64) ** 2).mean(1) + 1e-20) > db)
    return int(loud[0] * n) if loud.size else 0


def spread(files: Sequence[Path], n: int) -> list[Path]:
    """``files`` reordered so that the first ``n`` are spread evenly over the list (the
    i-th is file ``i * len / n``), the rest after them in order, to stand in for any of the
    first that cannot be used. ``n`` of 0, or at least the number of files: as they are."""
    files = list(files)
    if not 0 < n < len(files):
        return files
    first = sorted({i * len(files) // n for i in range(n)})
    taken = set(first)
    return [files[i] for i in first] + [f for i, f in enumerate(files) if i not in taken]


def load_clips(files: Sequence[Path], sr: int, prompt_seconds: float, seconds: float,
               offset: float = 0.0, limit: int = 0) -> tuple[list[Clip], list[dict[str, str]]]:
    """Clips from audio files; unreadable or too short files are skipped and reported
    (source, reason). With a ``limit`` below the number of files, the files are taken
    spread evenly over the list (``spread``), so that a split sorted by source (a test
    split whose first files are all one composer's) is sampled across its sources."""
    from aimusic.audio import load_audio
    from aimusic.errors import AudioError

    P, S = round(prompt_seconds * sr), round(seconds * sr)
    clips: list[Clip] = []
    skipped: list[dict[str, str]] = []
    for f in spread(files, limit):
        if limit and len(clips) >= limit:
            break
        try:
            x = load_audio(f, sr)
        except AudioError as e:
            skipped.append({"source": str(f), "reason": e.reason})
            continue
        start = lead_silence(x, sr) + round(offset * sr)
        x = x[start:]
        if x.size < P + S:
            skipped.append({"source": str(f), "reason": f"{x.size / sr:.1f} s after the start is "
                            f"shorter than prompt + continuation ({(P + S) / sr:g} s)"})
            continue
        clips.append(Clip(Path(f).stem, str(f), start / sr, x[:P].copy(), x[P:P + S].copy(),
                          x[P:P + round((STRETCH * seconds + 1) * sr)].copy()))
    return clips, skipped


def constructed(clip: Clip, sr: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The wrong continuations of ``CASES``, each as long as the truth."""
    import librosa

    n = clip.truth.size
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(clip.truth.astype(np.float64) ** 2)))
    stretched = librosa.effects.time_stretch(clip.after, rate=STRETCH)[:n]
    if stretched.size < n:  # the file ended: pad with silence rather than fail
        stretched = np.pad(stretched, (0, n - stretched.size))
    return {
        "loop": np.tile(clip.prompt, math.ceil(n / clip.prompt.size))[:n],
        "noise": (rng.standard_normal(n) * rms).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        f"shift+{SHIFT}": librosa.effects.pitch_shift(clip.truth, sr=sr, n_steps=SHIFT),
        f"stretch{STRETCH:g}": stretched.astype(np.float32),
        "drone": _drone(clip.prompt, n, rms, rng),
    }


def _drone(prompt: np.ndarray, n: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise whose every frame has the prompt's mean STFT magnitudes (random
    phases), scaled to ``rms``: the prompt's sound held still."""
    import librosa

    profile = np.abs(librosa.stft(prompt, n_fft=2048, hop_length=512)).mean(axis=1, keepdims=True)
    phases = np.exp(2j * np.pi * rng.random((profile.shape[0], n // 512 + 1)))
    y = librosa.istft(profile * phases, hop_length=512, n_fft=2048, length=n)
    return (y * rms / max(float(np.sqrt(np.mean(y.astype(np.float64) ** 2))), 1e-9)).astype(np.float32)


def _mean(rows: list[dict[str, float]], keys: Sequence[str] = C.MEASURES) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) for m in keys}


def reference_agreements(prompt: C.Features, truths: list[C.Features],
                         i: int) -> dict[str, dict[str, float]]:
    """Clip ``i``'s prompt against its own truth (the ceiling) and against the truths of the
    ``FLOOR_CLIPS`` clips after it, averaged (the floor)."""
    others = [truths[(i + j) % len(truths)] for j in range(1, FLOOR_CLIPS + 1)
              if (i + j) % len(truths) != i]
    return {"truth": C.agreement(prompt, truths[i]),
            "floor": _mean([C.agreement(prompt, o) for o in others])}


def roundtrip_coherence(files: Sequence[Path], sr: int,
                        roundtrips: dict[str, Callable[[np.ndarray], np.ndarray]],
                        prompt_seconds: float = 5.0, seconds: float = 10.0, offset: float = 0.0,
                        clips: int = 0) -> dict[str, Any]:
    """The coherence each of ``roundtrips`` (a codec at one bitrate, Opus...) keeps of the
    true continuation: the clips, truth and floor of ``eval continuation``, with each
    truth passed through the round trip in place of a generated continuation. What a
    perfect language model could reach through that codec."""
    items, skipped = load_clips(files, sr, prompt_seconds, seconds, offset, clips)
    if len(items) < 2:
        raise AimusicError(f"coherence needs at least 2 clips of {prompt_seconds + seconds:g} s; "
                           f"found {len(items)} in {len(files)} file(s)")
    truths = [C.features(c.truth, sr) for c in items]
    rows: dict[str, list[dict[str, float]]] = {"truth": [], "floor": [],
                                               **{k: [] for k in roundtrips}}
    for i, clip in enumerate(items):
        fp = C.features(clip.prompt, sr)
        for k, v in reference_agreements(fp, truths, i).items():
            rows[k].append(v)
        for name, trip in roundtrips.items():
            rows[name].append(C.agreement(fp, C.features(trip(clip.truth), sr)))
    return {"clips": len(items), "prompt_seconds": prompt_seconds, "seconds": seconds,
            "skipped": skipped,
            "coherence": {name: C.coherence(rows[name], rows["truth"], rows["floor"])
                          for name in roundtrips}}


def evaluate_continuation(files: Sequence[Path], out_dir: str | Path, chains: dict[str, Any],
                          sr: int, prompt_seconds: float = 5.0, seconds: float = 10.0,
                          offset: float = 0.0, clips: int = 0, seed: int = 0,
                          with_constructed: bool = False, progress: bool = False,
                          sampling: dict[str, Any] | None = None,
                          voices: dict[str, Any] | None = None,
                          notes: bool = False) -> dict[str, Any]:
    """Run the evaluation and write the report; returns what ``metrics.json`` holds.
    ``voices``: per chain, what keeps a speaker's voice (``continue --prompt-eq``'s
    ``voice.prompt.PromptVoice``);
    ``notes``: the note judge's figures beside the coherence."""
    from aimusic import __version__
    from aimusic.fileio import write_json
    from aimusic.progress import Bars

    if not prompt_seconds > 0 or not seconds > 0:
        raise AimusicError("--prompt-seconds and --seconds must be positive")
    items, skipped = load_clips(files, sr, prompt_seconds, seconds, offset, clips)
    if len(items) < 2:
        raise AimusicError(f"eval continuation needs at least 2 clips of {prompt_seconds + seconds:g} s "
                           f"(the floor is other clips); found {len(items)} in "
                           f"{len(files)} file(s)" + (f", {len(skipped)} skipped" if skipped else ""))
    if notes:
        from aimusic.gen import notes as N

        N.transcribe(np.zeros(sr, np.float32), sr)  # loads the transcriber, or says how to install it
    run = _ClipRun(Path(out_dir), sr, chains, items, prompt_seconds, seconds, seed,
                   with_constructed, sampling or {}, voices or {}, notes)
    per_clip: list[dict[str, Any]] = []
    with Bars(progress, lines_every=60.0, eta=True) as bars:
        bar = bars.bar("continuing clips", len(items))
        for i in range(len(items)):
            per_clip.append(run.clip(i))
            bar.advance()
    rows = list(per_clip[0]["agreement"])
    truth = [c["agreement"]["truth"] for c in per_clip]
    floor = [c["agreement"]["floor"] for c in per_clip]
    metrics = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "aimusic": __version__,
        "settings": {"prompt_seconds": prompt_seconds, "seconds": seconds, "offset": offset,
                     "seed": seed, "sample_rate": sr, "floor_clips": FLOOR_CLIPS,
                     "constructed": with_constructed, "prompt_eq": bool(voices)},
        "models": {name: _chain_models(ch) for name, ch in chains.items()},
        "measures": list(C.MEASURES),
        "coherence": {r: C.coherence([c["agreement"][r] for c in per_clip], truth, floor,
                                     reflected=r != "floor") for r in rows},
        "mean_agreement": {r: _mean([c["agreement"][r] for c in per_clip]) for r in rows},
        "breaks": {k: list(v) for k, v in BREAKS.items()} if with_constructed else {},
        "notes": ({r: _mean([c["notes"][r] for c in per_clip], (*NOTE_FIGURES, "notes"))
                   for r in per_clip[0]["notes"]} if notes else {}),
        "generation_seconds": {k: round(v, 2) for k, v in run.timings.items()},
        "clips": per_clip,
        "skipped": skipped,
    }
    write_json(Path(out_dir) / "metrics.json", metrics)
    write_report(Path(out_dir) / "report.html", metrics)
    return metrics


class _ClipRun:
    """One clip at a time: its prompt's agreement with the truth, the references (another
    piece, the truth through the codec, the constructed cases), each chain's
    continuation; audio and spectrograms written, the note judge's figures beside."""

    def __init__(self, out: Path, sr: int, chains: dict[str, Any], items: list[Clip],
                 prompt_seconds: float, seconds: float, seed: int, with_constructed: bool,
                 sampling: dict[str, Any], voices: dict[str, Any], notes: bool) -> None:
        self.out, self.sr, self.chains, self.items = out, sr, chains, items
        self.prompt_seconds, self.seconds, self.seed = prompt_seconds, seconds, seed
        self.with_constructed, self.sampling, self.voices = with_constructed, sampling, voices
        self.notes = notes
        self.feats_truth = [C.features(c.truth, sr) for c in items]
        self.timings: dict[str, float] = {name: 0.0 for name in chains}

    def clip(self, i: int) -> dict[str, Any]:
        from aimusic.audio import save_audio
        from aimusic.codec.stream import roundtrip
        from aimusic.gen.continuation import continue_audio
        from aimusic.report import spectrogram_png

        clip, sr, items = self.items[i], self.sr, self.items
        fp = C.features(clip.prompt, sr)
        agree = reference_agreements(fp, self.feats_truth, i)
        files_out: dict[str, dict[str, str]] = {}
        judged: dict[str, dict[str, float]] = {}
        if self.notes:
            from aimusic.gen import notes as N

            prompt_notes = N.transcribe(clip.prompt, sr)

        def keep(row: str, cont: np.ndarray) -> None:
            joined = np.concatenate([clip.prompt, cont])
            wav, png = f"{i:02d}-{row}.wav", f"{i:02d}-{row}.png"
            save_audio(self.out / wav, joined, sr)
            spectrogram_png(self.out / png, joined, sr, marks=[clip.prompt.size / sr])
            files_out[row] = {"audio": wav, "image": png}

        def judge(row: str, x: np.ndarray) -> None:
            if self.notes:
                judged[row] = N.judge(prompt_notes, N.transcribe(x, sr))

        keep("truth", clip.truth)
        judge("truth", clip.truth)
        judge("other", items[(i + 1) % len(items)].truth)
        codec_chain = next(iter(self.chains.values()), None)
        if codec_chain is not None:
            through = roundtrip(codec_chain.codec, clip.truth, device=codec_chain.device)
            agree["codec"] = C.agreement(fp, C.features(through, sr))
            judge("codec", through)
        for name, chain in self.chains.items():
            t0 = time.perf_counter()
            r = continue_audio(chain, clip.prompt, self.seconds,
                               prompt_seconds=self.prompt_seconds, continuation_only=True,
                               seed=self.seed + i, sampling=self.sampling.get(name),
                               name=clip.source, voice=self.voices.get(name))
            self.timings[name] += time.perf_counter() - t0
            agree[name] = C.agreement(fp, C.features(r["audio"], sr))
            keep(name, r["audio"])
            judge(name, r["audio"])
        if self.with_constructed:
            for case, x in constructed(clip, sr, self.seed + i).items():
                agree[case] = C.agreement(fp, C.features(x, sr))
                judge(case, x)
        return {"name": clip.name, "source": clip.source, "start": round(clip.start, 3),
                "agreement": agree, "files": files_out,
                **({"notes": judged} if self.notes else {})}


def _chain_models(chain: Any) -> dict[str, str]:
    out = {"codec": chain.codec.source_hash, "semantic": chain.semantic.source_hash}
    for stage, lm in chain.lms.items():
        out[f"lm-{stage}"] = getattr(lm, "source_hash", "")
    return out


ROW_NOTES = {
    "truth": "the true continuation (ceiling)",
    "floor": f"the same stretch of {FLOOR_CLIPS} other clips (floor)",
    "codec": "the truth through the codec: the best an LM can do with this codec",
    "flat": "generated: semantic, coarse and fine LMs",
    "delay": "generated: semantic LM, then one delay-pattern LM",
    "acoustic": "generated: acoustic-only baseline (no semantic stage)",
    "other": "another clip's truth (note judge only)",
    "drone": "constructed: noise holding the prompt's mean spectrum",
    "loop": "constructed: the prompt looped",
    "noise": "constructed: white noise at the truth's loudness",
    "silence": "constructed: silence",
    f"shift+{SHIFT}": f"constructed: the truth {SHIFT} semitones up",
    f"stretch{STRETCH:g}": f"constructed: the truth {STRETCH:g}x faster",
}


NOTE_FIGURES = ("key", "onsets_per_s", "sounding", "confidence")


def summary_rows(metrics: dict[str, Any]) -> list[list[object]]:
    """[row, each measure's coherence, overall, what the row is]."""
    out: list[list[object]] = []
    for row, c in metrics["coherence"].items():
        out.append([row, *[c[m] for m in C.MEASURES], c["overall"], ROW_NOTES.get(row, "")])
    return out


def write_report(path: Path, metrics: dict[str, Any]) -> None:
    from aimusic.report import esc, page, table, write_text

    s = metrics["settings"]
    head = ["row", *C.MEASURES, "overall", "what it is"]
    parts = [
        f"<p>{len(metrics['clips'])} clips: {s['prompt_seconds']:g} s prompt, {s['seconds']:g} s "
        f"continuation, seed {s['seed']}; aimusic {esc(metrics['aimusic'])}, {esc(metrics['created'])}.</p>",
        "<h2>Coherence</h2>",
        '<p class="note">Per measure: (generated - floor) / (truth - floor) on agreement with the '
        "prompt averaged over clips; agreement beyond the truth's counts as a shortfall (a copy "
        "is not better than the truth). 1 = as coherent as the truth, 0 = an unrelated clip. "
        "Overall: the mean of the four, each clipped to [0, 1].</p>",
        table(head, summary_rows(metrics), "coherence"),
        "<h2>Mean agreement with the prompt</h2>",
        table(["row", *C.MEASURES],
              [[r, *[v[m] for m in C.MEASURES]] for r, v in metrics["mean_agreement"].items()]),
    ]
    if metrics.get("notes"):
        parts += [
            "<h2>Notes (basic-pitch)</h2>",
            '<p class="note">An independent transcriber reads the prompt and each row. Key: '
            "correlation of duration-weighted pitch-class histograms with the prompt's. "
            "Onsets/s: notes begun per second. Sounding: share of frames where a note sounds. "
            "Confidence: mean note posterior, weighted by duration. Key alone proves little "
            "(a drone of the prompt's spectrum agrees in key); read all four beside the "
            "truth's.</p>",
            table(["row", *NOTE_FIGURES],
                  [[r, *[v[k] for k in NOTE_FIGURES]] for r, v in metrics["notes"].items()]),
        ]
    if metrics["models"]:
        parts.append("<h2>Models</h2>" + table(
            ["layout", "models (hash)"],
            [[k, ", ".join(f"{a} {h}" for a, h in v.items())] for k, v in metrics["models"].items()]))
    parts.append("<h2>Clips</h2>")
    for c in metrics["clips"]:
        blocks = []
        for row, f in c["files"].items():
            a = c["agreement"][row]
            vals = ", ".join(f"{m} {a[m]:.2f}" for m in C.MEASURES)
            blocks.append(f"<p><b>{esc(row)}</b> <audio controls preload=\"none\" "
                          f"src=\"{esc(f['audio'])}\"></audio> <span class=\"note\">{esc(vals)}</span>"
                          f"<br><img src=\"{esc(f['image'])}\" alt=\"{esc(c['name'])} {esc(row)}: "
                          "log-mel spectrogram, seam marked\"></p>")
        parts.append(f"<div class=\"clip\"><h3>{esc(c['name'])}</h3><p class=\"note\">"
                     f"{esc(c['source'])} from {c['start']:.2f} s; the dashed line is where the "
                     f"prompt ends</p>{''.join(blocks)}</div>")
    if metrics["skipped"]:
        parts.append("<h2>Skipped</h2>" + table(["file", "why"],
                                                [[k["source"], k["reason"]] for k in metrics["skipped"]]))
    write_text(path, page("aimusic: continuation report", "\n".join(parts)))
