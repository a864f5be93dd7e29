"""``aimusic demo``: hear the toolkit before training anything.

Continues a bundled recorded prompt (a piece the bundled models never trained on) by 20 s
with the bundled music models, a bundled solo piano piece (the piano corpus's test split)
with the bundled piano models, speaks a sentence with the voice models, and writes
``demo/report.html``: each continuation beside what really came next and beside that truth
through the codec alone (the best an LM could do with this codec), spectrograms with the
seam marked, audio players, timings, the models used and the figures measured for them
(``aimusic/bundled/<name>/figures.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any

from aimusic import __version__
from aimusic.errors import AimusicError

EXAMPLE_PROMPT = Path(__file__).resolve().parent / "bundled" / "examples" / "caves.flac"
# a piece of the piano corpus's test split (`make piano-corpus`): the piano models never saw it
PIANO_PROMPT = Path(__file__).resolve().parent / "bundled" / "examples" / "piano.flac"
# ten words in no sentence of the speech corpus (`make speech-corpus`)
VOICE_TEXT = "A small boat drifted slowly toward the quiet northern harbour."


def run_demo(out_dir: str | Path, models_dir: str | Path, prompt_file: str | Path | None = None,
             prompt_seconds: float = 5.0, seconds: float = 20.0, seed: int = 0,
             progress: bool = True, voice_models: str | Path | None = None,
             piano_models: str | Path | None = None) -> dict[str, Any]:
    """Continue the prompt with ``models_dir``, and PIANO_PROMPT with ``piano_models`` (when
    given), speak VOICE_TEXT in the example voice with ``voice_models`` (skipped, with
    ``voice_note`` saying why, when that folder has no reading LM or espeak-ng is missing),
    write the audio, figures, metrics.json and report.html."""
    from aimusic.fileio import write_json
    from aimusic.text.phonemes import PhonemeError

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompt_path = Path(prompt_file) if prompt_file is not None else EXAMPLE_PROMPT
    music = _continue(Path(models_dir), prompt_path, prompt_seconds, seconds, seed, progress,
                      out, prefix="")
    metrics: dict[str, Any] = {
        "aimusic": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **music,
        "piano": None,
        "voice": None, "voice_note": None,
    }
    if piano_models:
        metrics["piano"] = _continue(Path(piano_models), PIANO_PROMPT, prompt_seconds, seconds,
                                     seed, progress, out, prefix="piano-")
    if voice_models:
        try:
            metrics["voice"] = _speak(Path(voice_models), out, seed, progress)
        except PhonemeError as e:  # the music half stands without the voice's system package
            metrics["voice_note"] = f"nothing spoken: {e}"
        if metrics["voice"] is None and metrics["voice_note"] is None:
            metrics["voice_note"] = f"nothing spoken: no reading LM in {voice_models}"
    metrics["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    write_demo_report(out / "report.html", metrics)
    return metrics


def _continue(models_dir: Path, prompt_path: Path, prompt_seconds: float, seconds: float,
              seed: int, progress: bool, out: Path, prefix: str) -> dict[str, Any]:
    """The first ``prompt_seconds`` of ``prompt_path`` continued by ``seconds`` with the flat
    chain in ``models_dir``, beside the truth and the truth through the codec (when the
    file is long enough): OUT/PREFIX*.wav and .png, and what made them."""
    from aimusic.audio import load_audio
    from aimusic.codec.stream import roundtrip
    from aimusic.gen import continue_audio, format_timings, load_chain

    chain = load_chain(models_dir, "flat")
    sr = chain.sample_rate
    full = load_audio(prompt_path, sr)
    n_prompt = int(prompt_seconds * sr)
    if full.size < n_prompt:
        raise AimusicError(f"{prompt_path}: {full.size / sr:.2f} s of audio, shorter than the "
                           f"{prompt_seconds:g} s prompt")
    prompt = full[:n_prompt]
    truth = full[:n_prompt + int(seconds * sr)] if full.size >= n_prompt + int(seconds * sr) else None

    r = continue_audio(chain, prompt, seconds, seed=seed, progress=progress, name=str(prompt_path))
    rows = [(f"{prefix}continued", r["audio"], f"generated: {prompt_seconds:g} s prompt + "
             f"{seconds:g} s from the {_listed(chain.stages)} LMs")]
    if truth is not None:
        rows.append((f"{prefix}truth", truth, "what really came next (never trained on)"))
        rows.append((f"{prefix}truth-codec", roundtrip(chain.codec, truth, device=chain.device),
                     "the truth through the codec alone: the best an LM could do with it"))
    return {
        "prompt": {"file": str(prompt_path), "seconds": prompt_seconds},
        "seconds": seconds, "seed": r["seed"], "sample_rate": sr,
        "models_dir": str(models_dir), "models": _describe(_chain_models(chain)),
        "timings": {k: r[k] for k in ("encode", "decode", "total", "x_realtime")},
        "stages": r["stages"], "timings_line": format_timings(r),
        "files": _write_clips(out, rows, sr, marks=[prompt_seconds]),
        "figures": _figures(models_dir),
    }


def _speak(models_dir: Path, out: Path, seed: int, progress: bool) -> dict[str, Any] | None:
    """VOICE_TEXT in the example voice: the voice prompt and the speech, as audio and
    spectrograms, with timings, the models and their figures; None without a reading LM."""
    from aimusic.audio import load_audio
    from aimusic.gen import format_timings, load_chain
    from aimusic.lm.model import load_lm
    from aimusic.text.phonemes import check_espeak
    from aimusic.voice.tts import EXAMPLE_VOICE, READING_FILE, speak_text

    if not (models_dir / READING_FILE).exists():
        return None
    check_espeak()
    chain = load_chain(models_dir, "flat")
    lm = load_lm(models_dir / READING_FILE, "reading", chain.device)
    sr = chain.sample_rate
    voice = load_audio(EXAMPLE_VOICE, sr)
    r = speak_text(chain, lm, VOICE_TEXT, voice, voice_name=str(EXAMPLE_VOICE), seed=seed,
                   progress=progress)
    files = _write_clips(out, [("voice", voice, "the voice prompt (a voice never trained on)"),
                               ("speech", r["audio"], f"spoken in that voice: \u201c{VOICE_TEXT}\u201d")], sr)
    return {
        "models_dir": str(models_dir), "text": VOICE_TEXT, "phonemes": r["phonemes"],
        "voice": str(EXAMPLE_VOICE), "seed": r["seed"], "files": files,
        "timings": {k: r[k] for k in ("encode", "decode", "total", "x_realtime")},
        "timings_line": format_timings(r),
        "models": _describe({**_chain_models(chain), "lm-reading": lm}),
        "figures": _figures(models_dir),
    }


def _listed(names: tuple[str, ...]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _write_clips(out: Path, rows: list[tuple[str, Any, str]], sr: int,
                 marks: list[float] | None = None) -> dict[str, Any]:
    """Each (name, audio, what) as OUT/name.wav and its spectrogram OUT/name.png."""
    from aimusic.audio import save_audio
    from aimusic.report import spectrogram_png

    files = {}
    for name, audio, what in rows:
        save_audio(out / f"{name}.wav", audio, sr)
        spectrogram_png(out / f"{name}.png", audio, sr, marks=marks or [])
        files[name] = {"audio": f"{name}.wav", "image": f"{name}.png", "what": what,
                       "seconds": round(audio.size / sr, 2)}
    return files


def _describe(models: dict[str, Any]) -> dict[str, Any]:
    """Each loaded model by role: its file name, hash and size."""
    return {role: {"file": Path(m.source_path).name, "hash": m.source_hash,
                   "mb": round(Path(m.source_path).stat().st_size / 1e6, 1)}
            for role, m in models.items()}


def _figures(models_dir: Path) -> dict[str, Any] | None:
    """The measured figures kept beside a bundle (figures.json), if any."""
    f = models_dir / "figures.json"
    return json.loads(f.read_text()) if f.exists() else None


def _chain_models(chain: Any) -> dict[str, Any]:
    """Each loaded model of the chain by role; each knows its file and its hash."""
    return {"codec": chain.codec, "semantic": chain.semantic,
            **{f"lm-{stage}": lm for stage, lm in chain.lms.items()}}


def write_demo_report(path: Path, m: dict[str, Any]) -> None:
    from aimusic.report import esc, page, table, write_text

    parts = [f"<p>aimusic {esc(m['aimusic'])}, {esc(m['created'])}; the whole demo took "
             f"{m['elapsed_s']:.1f} s. The dashed line marks where each prompt ends.</p>"]
    parts += _continuation_section(m, "h2")
    if m.get("piano"):
        parts.append("<h2>Solo piano</h2>")
        parts += _continuation_section(m["piano"], "h3")
    v = m.get("voice")
    if v is None:
        note = m.get("voice_note") or "nothing spoken: no reading LM"
        parts.append(f"<h2>Voice</h2><p>{esc(note[0].upper() + note[1:])}.</p>")
    else:
        parts.append(f"<h2>Voice</h2><p><code>aimusic speak</code> with the models in "
                     f"<code>{esc(v['models_dir'])}</code> (seed {v['seed']}): the reading LM "
                     "turns the text's phonemes into semantic tokens, and the coarse and fine "
                     "LMs render them in the prompt's voice.</p>")
        parts += _clips(v["files"], "spectrogram")
        t = v["timings"]
        parts.append(f"<p class=\"note\">{esc(v['timings_line'])}: {t['x_realtime']:.2f} seconds "
                     "of speech per second of wall time.</p>")
        parts.append("<h3>Voice models</h3>" + table(
            ["role", "file", "hash", "MB"],
            [[k, x["file"], x["hash"], x["mb"]] for k, x in v["models"].items()]))
        parts += _figure_tables(v.get("figures"))
    write_text(path, page("aimusic demo: continue a recorded piece and a piano piece, speak a "
                          "sentence",
                          "\n".join(parts)))


def _continuation_section(m: dict[str, Any], h: str) -> list[str]:
    """One continuation's paragraph, clips, timings, models and figures."""
    from aimusic.report import esc, table

    parts = [f"<p>Prompt: the first {m['prompt']['seconds']:g} s of <code>{esc(m['prompt']['file'])}"
             f"</code>, continued by {m['seconds']:g} s with the models in <code>"
             f"{esc(m['models_dir'])}</code> (seed {m['seed']}).</p>"]
    parts += _clips(m["files"], "spectrogram, prompt end marked")
    t = m["timings"]
    stage_rows = [[s, v["tokens"], v["seconds"]] for s, v in m["stages"].items()]
    parts.append(f"<{h}>Timings</{h}>" + table(
        ["step", "tokens", "seconds"],
        [["encode prompt", "", t["encode"]], *stage_rows, ["decode", "", t["decode"]],
         ["total", "", t["total"]]]) +
        f"<p class=\"note\">{t['x_realtime']:.2f} seconds of music per second of wall time.</p>")
    parts.append(f"<{h}>Models</{h}>" + table(
        ["role", "file", "hash", "MB"],
        [[k, v["file"], v["hash"], v["mb"]] for k, v in m["models"].items()]) +
        "<p class=\"note\">How each was trained (command, steps, data, time, machine): "
        "MODEL_CARD.md beside them.</p>")
    return parts + _figure_tables(m.get("figures"), h)


def _clips(files: dict[str, Any], image_what: str) -> list[str]:
    from aimusic.report import esc

    return [f"<div class=\"clip\"><h3>{esc(name)}</h3><p class=\"note\">{esc(f['what'])}, "
            f"{f['seconds']:g} s</p><p><audio controls preload=\"none\" src=\"{esc(f['audio'])}\">"
            f"</audio></p><img src=\"{esc(f['image'])}\" alt=\"{esc(name)}: log-mel "
            f"{image_what}\"></div>" for name, f in files.items()]


def _figure_tables(fig: dict[str, Any] | None, h: str = "h2") -> list[str]:
    from aimusic.report import esc, table

    return [f"<{h}>{esc(sec['title'])}</{h}>" + table(sec["header"], sec["rows"])
            + (f"<p class=\"note\">{esc(sec['note'])}</p>" if sec.get("note") else "")
            for sec in (fig or {}).get("tables", [])]
