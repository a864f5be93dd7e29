"""``aimusic demo``: hear the toolkit before training anything.

Continues a bundled recorded prompt (a piece the bundled models never trained on) by 20 s
with the bundled models and writes ``demo/report.html``: the continuation beside what
really came next and beside that truth through the codec alone (the best an LM could do
with this codec), spectrograms with the seam marked, audio players, timings, the models
used and the figures measured for them (``aimusic/bundled/<name>/figures.json``).
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


def run_demo(out_dir: str | Path, models_dir: str | Path, prompt_file: str | Path | None = None,
             prompt_seconds: float = 5.0, seconds: float = 20.0, seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Continue the prompt, write the audio, figures, metrics.json and report.html."""
    from aimusic.audio import load_audio, save_audio
    from aimusic.fileio import write_json
    from aimusic.gen import continue_audio, format_timings, load_chain
    from aimusic.gen.evaluate import codec_roundtrip
    from aimusic.report import spectrogram_png

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompt_path = Path(prompt_file) if prompt_file is not None else EXAMPLE_PROMPT
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
    rows = [("continued", r["audio"], f"generated: {prompt_seconds:g} s prompt + {seconds:g} s "
             "from the semantic, coarse and fine LMs")]
    if truth is not None:
        rows.append(("truth", truth, "what really came next (never trained on)"))
        rows.append(("truth-codec", codec_roundtrip(chain, truth),
                     "the truth through the codec alone: the best an LM could do with it"))
    files = {}
    for name, audio, what in rows:
        save_audio(out / f"{name}.wav", audio, sr)
        spectrogram_png(out / f"{name}.png", audio, sr, marks=[prompt_seconds])
        files[name] = {"audio": f"{name}.wav", "image": f"{name}.png", "what": what,
                       "seconds": round(audio.size / sr, 2)}
    models = {role: {"file": Path(m.source_path).name, "hash": m.source_hash,
                     "mb": round(Path(m.source_path).stat().st_size / 1e6, 1)}
              for role, m in _chain_models(chain).items()}
    figures_file = Path(models_dir) / "figures.json"
    metrics = {
        "aimusic": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "prompt": {"file": str(prompt_path), "seconds": prompt_seconds},
        "seconds": seconds, "seed": r["seed"], "sample_rate": sr,
        "models_dir": str(models_dir), "models": models,
        "timings": {k: r[k] for k in ("encode", "decode", "total", "x_realtime")},
        "stages": r["stages"], "timings_line": format_timings(r),
        "files": files,
        "figures": json.loads(figures_file.read_text()) if figures_file.exists() else None,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    write_json(out / "metrics.json", metrics)
    write_demo_report(out / "report.html", metrics)
    return metrics


def _chain_models(chain: Any) -> dict[str, Any]:
    """Each loaded model of the chain by role; each knows its file and its hash."""
    return {"codec": chain.codec, "semantic": chain.semantic,
            **{f"lm-{stage}": lm for stage, lm in chain.lms.items()}}


def write_demo_report(path: Path, m: dict[str, Any]) -> None:
    from aimusic.report import esc, page, table, write_text

    parts = [
        f"<p>Prompt: the first {m['prompt']['seconds']:g} s of <code>{esc(m['prompt']['file'])}</code>, "
        f"continued by {m['seconds']:g} s with the models in <code>{esc(m['models_dir'])}</code> "
        f"(seed {m['seed']}); aimusic {esc(m['aimusic'])}, {esc(m['created'])}. The dashed line "
        "marks where the prompt ends.</p>",
    ]
    for name, f in m["files"].items():
        parts.append(f"<div class=\"clip\"><h3>{esc(name)}</h3><p class=\"note\">{esc(f['what'])}, "
                     f"{f['seconds']:g} s</p><p><audio controls preload=\"none\" src=\"{esc(f['audio'])}\">"
                     f"</audio></p><img src=\"{esc(f['image'])}\" alt=\"{esc(name)}: log-mel "
                     "spectrogram, prompt end marked\"></div>")
    t = m["timings"]
    stage_rows = [[s, v["tokens"], v["seconds"]] for s, v in m["stages"].items()]
    parts.append("<h2>Timings</h2>" + table(
        ["step", "tokens", "seconds"],
        [["encode prompt", "", t["encode"]], *stage_rows, ["decode", "", t["decode"]],
         ["total", "", t["total"]]]) +
        f"<p class=\"note\">{t['x_realtime']:.2f} seconds of music per second of wall time; the "
        "whole demo took {:.1f} s.</p>".format(m["elapsed_s"]))
    parts.append("<h2>Models</h2>" + table(
        ["role", "file", "hash", "MB"],
        [[k, v["file"], v["hash"], v["mb"]] for k, v in m["models"].items()]) +
        "<p class=\"note\">How each was trained (command, steps, data, time, machine): "
        "MODEL_CARD.md beside them.</p>")
    fig = m.get("figures")
    if fig:
        for section in fig.get("tables", []):
            parts.append(f"<h2>{esc(section['title'])}</h2>"
                         + table(section["header"], section["rows"])
                         + (f"<p class=\"note\">{esc(section['note'])}</p>" if section.get("note") else ""))
    parts.append("<h2>Voice</h2><p>Speech models are not bundled yet: <code>aimusic speak</code> "
                 "is still being built (see the voice issue). <code>aimusic eval voice</code> and "
                 "the speech corpus (<code>make speech-corpus</code>) are ready.</p>")
    write_text(path, page("aimusic demo: continue a recorded piece", "\n".join(parts)))
