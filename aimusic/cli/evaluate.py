"""The ``aimusic eval`` commands: each stage measured on held-out audio."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aimusic.cli.common import (
    LayoutOpt,
    ModelsOpt,
    StageOpt,
    codec_path,
    eval_app,
    handle_errors,
    load_chain_for,
    models_in,
    print_lm_result,
    semantic_path,
)
from aimusic.errors import AimusicError
from aimusic.fileio import check_writable
from aimusic.runtime import console, settings, stdout


@eval_app.command("codec")
def eval_codec_cmd(
    audio_dir: Annotated[Path, typer.Argument(help="Audio to measure on (never trained on).")],
    bandwidth: Annotated[
        Optional[list[float]], typer.Option(help="kbps to test; repeat (default: 1.5 3 6).")
    ] = None,
    vs_opus: Annotated[bool, typer.Option(help="Also run Opus at the same bitrates.")] = False,
    opus_kbps: Annotated[
        Optional[list[float]], typer.Option(help="Opus bitrates (default: the codec's, and 12).")
    ] = None,
    clips: Annotated[int, typer.Option(help="At most this many files.")] = 20,
    seconds: Annotated[float, typer.Option(help="Seconds from the middle of each file.")] = 10.0,
    codec: Annotated[Optional[Path], typer.Option(help="Codec model file.")] = None,
    models: ModelsOpt = None,
    coherence: Annotated[
        bool, typer.Option(help="Also the continuation coherence the codec keeps: the first "
                                "--clips files' true continuations (10 s after a 5 s prompt) "
                                "through the codec, scored as `eval continuation` scores a "
                                "continuation (1 = the truth's, 0 = an unrelated clip's).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Also write JSON here.")] = None,
) -> None:
    """Mel distance, SI-SDR, speed and code usage of the codec; Opus beside it (--vs-opus)."""
    from aimusic.audio import audio_info, list_audio_files
    from aimusic.codec.evaluate import evaluate_codec
    from aimusic.codec.model import load_codec
    from aimusic.data import fixed_clips
    from aimusic.fileio import write_json
    from aimusic.runtime import resolve_device

    with handle_errors():
        if out is not None:
            check_writable(out)
        device = resolve_device()
        path = codec_path(codec, models)
        model = load_codec(path, device)
        files = [audio_info(f) for f in list_audio_files(audio_dir)]
        if not files:
            raise AimusicError(f"{audio_dir}: no audio files found")
        step = max(1, len(files) // clips)
        chosen = fixed_clips(files[::step], model.cfg.sample_rate, seconds, clips)
        bws = bandwidth or model.cfg.bandwidths()
        opus = (opus_kbps or sorted(set(bws) | {12.0})) if vs_opus else []
        opus = [max(6.0, k) for k in opus]  # opusenc's floor is 6 kbps
        result = evaluate_codec(model, chosen, bws, sorted(set(opus)), device)
        result["codec_file"], result["data"] = str(path), str(audio_dir)
        if coherence:
            result["coherence"] = _codec_coherence(model, audio_dir, bws, sorted(set(opus)),
                                                   clips, device)
        if out:
            write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    stdout.print(f"{result['clips']} clips, {result['seconds']} s from {audio_dir}")
    for bw, r in result["codec"].items():
        stdout.print(f"aimusic {bw:>5} kbps  mel {r['mel_distance']:.3f}  SI-SDR "
                     f"{r['si_sdr']:6.2f} dB  encode {r['encode_x_realtime']}x  decode "
                     f"{r['decode_x_realtime']}x  usage {min(r['code_usage']):.2f}..."
                     f"{max(r['code_usage']):.2f}", highlight=False)
    for kb, r in result["opus"].items():
        stdout.print(f"opus    {kb:>5} kbps  mel {r['mel_distance']:.3f}  SI-SDR "
                     f"{r['si_sdr']:6.2f} dB", highlight=False)
    for step in result["ladder"]:
        stdout.print(f"{step['from']} -> {step['to']} kbps: mel distance drops "
                     f"{step['mean_drop']:.4f} (standard error {step['std_error']:.4f}; lower on "
                     f"{step['clips_better']} of {step['clips']} clips)", highlight=False)
    if "coherence" in result:
        coh = result["coherence"]
        stdout.print(f"continuation coherence kept ({coh['clips']} clips; 1 = the truth's):")
        for name, c in coh["coherence"].items():
            stdout.print(f"  {name:<12} overall {c['overall']:.3f}  " + "  ".join(
                f"{m} {c[m]:.2f}" for m in ("harmony", "rhythm", "timbre", "repetition")),
                highlight=False)
    if out:
        stdout.print(f"written: {out}")


def _codec_coherence(model: Any, audio_dir: Path, bws: list[float], opus: list[float],
                     clips: int, device: Any) -> dict[str, Any]:
    """``eval codec --coherence``: each bitrate's (and Opus's) round trip of the truth."""
    import tempfile

    from aimusic.audio import list_audio_files
    from aimusic.codec.evaluate import opus_roundtrip
    from aimusic.codec.stream import roundtrip
    from aimusic.gen.evaluate import roundtrip_coherence

    sr = model.cfg.sample_rate

    def through(levels: int) -> Callable[[Any], Any]:
        return lambda x: roundtrip(model, x, levels, device)

    def opus_at(kbps: float, tmp: Path) -> Callable[[Any], Any]:
        return lambda x: opus_roundtrip(x, sr, kbps, tmp)

    with tempfile.TemporaryDirectory() as tmp:
        trips = {f"{bw:g} kbps": through(model.cfg.levels_for(bw)) for bw in bws}
        trips.update({f"opus {k:g}": opus_at(k, Path(tmp)) for k in opus})
        return roundtrip_coherence(list_audio_files(audio_dir), sr, trips, clips=clips)


@eval_app.command("semantic")
def eval_semantic_cmd(
    pairs_dir: Annotated[
        Path, typer.Argument(help="Folder with a/ and b/: the same pieces rendered with two "
                                  "instrument sets (examples/make_corpus.py --pairs).")
    ],
    semantic: Annotated[
        Optional[list[Path]], typer.Option(help="Semantic model(s); repeat "
                                                "(default: MODELS/semantic.safetensors).")
    ] = None,
    codec: Annotated[
        Optional[Path], typer.Option(help="Also the codec's first level (default: MODELS/"
                                          "codec.safetensors, when present).")
    ] = None,
    models: ModelsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Also write JSON here.")] = None,
) -> None:
    """Do tokens follow the music or the instrument? NMI and the same-token share between
    two renders' tokens."""
    from aimusic.codec.model import load_codec
    from aimusic.codec.stream import encode_stream
    from aimusic.fileio import write_json
    from aimusic.semantic.evaluate import agreement, pairs
    from aimusic.semantic.model import load_semantic

    with handle_errors():
        if out is not None:
            check_writable(out)
        found = pairs(pairs_dir)
        tokenizers: dict[str, Callable[[Any], Any]] = {}
        paths = semantic or [semantic_path(None, models)]
        for path in paths:
            m = load_semantic(path)
            # the path as given where two share a file name (one row each)
            name = str(path) if [p.name for p in paths].count(path.name) > 1 else path.name
            tokenizers[f"{name} (iteration {m.cfg.iteration})"] = m.tokens
        codec_file = codec_path(codec, models)
        if codec is not None or codec_file.exists():
            cm = load_codec(codec_file)

            def level0(x, cm=cm):
                return encode_stream(cm, iter([x]), 1)[0][0].numpy()

            tokenizers[f"{codec_file.name} (codec level 0)"] = level0
        result = agreement(found, tokenizers)
        result["data"] = str(pairs_dir)
        if out:
            write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    stdout.print(f"{result['pieces']} pieces rendered twice, from {pairs_dir}")
    for name, r in result["tokenizers"].items():
        stdout.print(f"{name:<44} NMI {r['nmi']:.3f}  (same piece shifted {r['shifted']:.3f}, "
                     f"other piece {r['other']:.3f}); same token {r['same']:.3f} (shifted "
                     f"{r['same_shifted']:.3f}, other {r['same_other']:.3f}); {r['frames']} frames",
                     highlight=False, soft_wrap=True)


@eval_app.command("lm")
def eval_lm_cmd(
    tokens_dir: Annotated[
        Path, typer.Argument(help="Token directory; its validation items are measured.")
    ] = Path("tokens"),
    stage: StageOpt = "all",
    layout: LayoutOpt = "flat",
    models: ModelsOpt = None,
    windows: Annotated[
        int, typer.Option(help="At most this many windows per stage (0: the whole split).")
    ] = 0,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Also write JSON here.")] = None,
) -> None:
    """Validation cross entropy of the LMs beside unigram and bigram baselines (nats/token)."""
    from aimusic.fileio import write_json
    from aimusic.lm.train import evaluate_lms, stages_for
    from aimusic.runtime import resolve_device

    with handle_errors():
        if out is not None:
            check_writable(out)
        result = evaluate_lms(tokens_dir, models_in(models), stages_for(stage, layout),
                              resolve_device(), windows, batch_size)
        if out:
            write_json(out, {"data": str(tokens_dir), "stages": result})
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for s, r in result.items():
        print_lm_result(s, r)


@eval_app.command("continuation")
def eval_continuation_cmd(
    audio: Annotated[list[Path], typer.Argument(help="Held-out audio files or folders.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Report folder: metrics.json, "
                                                          "report.html, audio and PNGs.")] = Path("report"),
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of each clip used as the prompt.")] = 5.0,
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds continued and measured.")] = 10.0,
    clips: Annotated[int, typer.Option(help="At most this many clips, from files spread evenly "
                                            "over the list (0: every file).")] = 8,
    offset: Annotated[float, typer.Option(help="Seconds into each file (after its leading "
                                                "silence) where the prompt starts.")] = 0.0,
    layout: Annotated[
        Optional[list[str]], typer.Option("--layout", help="Layouts to continue with; repeat "
                                                           "(default: every layout whose LMs are in "
                                                           "MODELS: flat, delay, acoustic).")
    ] = None,
    generate: Annotated[bool, typer.Option(help="--no-generate: no models, only the truth, floor "
                                                "and (with --constructed) the constructed cases.")] = True,
    with_constructed: Annotated[bool, typer.Option("--constructed", help="Also score continuations "
                                                   "built to be wrong (loop, noise, silence, pitch "
                                                   "shift, time stretch): checks the measures.")] = False,
    seed: Annotated[int, typer.Option(help="Sampling seed of clip i is seed + i.")] = 0,
    models: ModelsOpt = None,
    eq: Annotated[
        bool, typer.Option("--prompt-eq/--no-prompt-eq",
                           help="Continue as `continue --prompt-eq` does (off by default).")
    ] = False,
    notes: Annotated[
        bool, typer.Option("--notes", help="Also judge the notes with an independent "
                                           "transcriber (basic-pitch): key agreement, onsets/s, "
                                           "sounding frames, note confidence.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the coherence table as JSON.")] = False,
) -> None:
    """How well continuations keep the prompt's harmony, rhythm and sound, against the truth
    (ceiling) and other clips (floor); writes OUT/report.html."""
    from aimusic.audio import list_audio_files
    from aimusic.gen.chain import LAYOUT_STAGES
    from aimusic.gen.evaluate import evaluate_continuation
    from aimusic.lm.model import lm_path
    from aimusic.voice.prompt import PromptVoice

    with handle_errors():
        check_writable(out, folder=True)
        files = [f for a in audio for f in list_audio_files(a)]
        if not files:
            raise AimusicError(f"no audio files in {', '.join(map(str, audio))}")
        chains: dict[str, Any] = {}
        sr = 24000
        if generate:
            mdir = models_in(models)
            names = layout or [name for name, stages in LAYOUT_STAGES.items()
                               if all(lm_path(mdir, s).exists() for s in stages)]
            if not names:
                raise AimusicError(f"no LMs in {mdir}: train them (`aimusic train-lm`), name --models, "
                                   "or pass --no-generate to check the measures alone")
            for name in names:
                chains[name] = load_chain_for(models, name, None, None)
            sr = next(iter(chains.values())).sample_rate
        metrics = evaluate_continuation(files, out, chains, sr, prompt_seconds, seconds, offset, clips,
                                        seed, with_constructed, progress=not settings.quiet,
                                        voices={n: PromptVoice.of(c, 0, True) for n, c in chains.items()}
                                        if eq else None, notes=notes)
    if as_json:
        typer.echo(json.dumps({"coherence": metrics["coherence"], "notes": metrics["notes"],
                               "report": str(out / "report.html")}, indent=2))
        return
    _print_continuation_tables(metrics, prompt_seconds, seconds)
    for k in metrics["skipped"]:
        console.print(f"[yellow]skipped[/] {k['source']}: {k['reason']}", highlight=False)
    stdout.print(f"report: {out / 'report.html'}", highlight=False)


def _print_continuation_tables(metrics: dict[str, Any], prompt_seconds: float,
                               seconds: float) -> None:
    """The coherence table, and the note judge's when it ran."""
    from rich.table import Table

    from aimusic.gen.evaluate import NOTE_FIGURES, summary_rows

    t = Table(title=f"coherence, {len(metrics['clips'])} clips ({prompt_seconds:g} s prompt, "
                    f"{seconds:g} s continued)")
    for h in ["row", "harmony", "rhythm", "timbre", "repetition", "overall"]:
        t.add_column(h, justify="left" if h == "row" else "right")
    for r in summary_rows(metrics):  # the last column (what a row is) is in the report
        t.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r[:-1]])
    stdout.print(t)
    if metrics["notes"]:
        nt = Table(title="notes (basic-pitch), against the prompt's")
        for h in ["row", *NOTE_FIGURES]:
            nt.add_column(h, justify="left" if h == "row" else "right")
        for row, v in metrics["notes"].items():
            nt.add_row(row, *[f"{v[k]:.2f}" for k in NOTE_FIGURES])
        stdout.print(nt)


@eval_app.command("voice")
def eval_voice_cmd(
    corpus: Annotated[Path, typer.Argument(help="Speech corpus folder with manifest.jsonl "
                                                "(examples/make_speech_corpus.py).")],
    generated: Annotated[
        Optional[Path], typer.Option("--generated", "-g", help="Generated speech: a JSONL/JSON list "
                                     "(or a folder holding outputs.jsonl) of {path, text, speaker "
                                     "and/or prompt}; paths relative to the list (a prompt also to "
                                     "CORPUS). Without it: the corpus's own reference figures.")
    ] = None,
    per_speaker: Annotated[int, typer.Option(help="Real utterances used per speaker.")] = 10,
    enroll: Annotated[int, typer.Option(help="Utterances whose mean embedding enrolls a voice.")] = 3,
    id_seconds: Annotated[float, typer.Option(help="Seconds of an utterance identified.")] = 3.0,
    wer_real: Annotated[bool, typer.Option("--wer/--no-wer", help="Transcribe the real recordings "
                                                                  "(the slow part).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Also write JSON here.")] = None,
) -> None:
    """Whose voice, and how intelligible: speaker similarity (cosine of resemblyzer embeddings)
    against the prompt beside the same- and different-speaker means, speaker-ID accuracy among
    enrolled voices, and pocketsphinx WER beside the real recordings' (the ratio is what counts).

    A --generated line: {"path": "out/0.wav", "text": "Is there a dog?", "prompt":
    "wav/test/flite-rms/s1.wav"} (or "speaker": "flite-rms" in place of, or beside, the prompt).
    Needs the judges: pip install 'aimusic\\[eval]'."""
    from aimusic.fileio import write_json
    from aimusic.voice.evaluate import evaluate_voice
    from aimusic.voice.judges import check_judges

    with handle_errors():
        if out is not None:
            check_writable(out)
        check_judges()
        result = evaluate_voice(corpus, generated, per_speaker=per_speaker, enroll=enroll,
                                id_seconds=id_seconds, wer_real=wer_real,
                                log=None if settings.quiet or as_json else
                                lambda s: console.print(s, highlight=False))
        if out:
            write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    r = result["reference"]

    def f(x: Any, fmt: str = ".3f") -> str:
        return "-" if x is None else format(x, fmt)

    stdout.print(f"{r['utterances']} utterances of {r['speakers']} speakers from {corpus}", highlight=False)
    stdout.print(f"real   similarity same speaker {f(r['same_speaker'])}  different "
                 f"{f(r['different_speaker'])}  ID accuracy {f(r['id_accuracy'])} (chance "
                 f"{f(r['id_chance'])}, {r['id_queries']} queries)  WER {f(r.get('wer'))}", highlight=False)
    if r.get("test_voices"):
        stdout.print(f"       ID among the {len(r['test_voices'])} test voices alone "
                     f"{f(r['test_id_accuracy'])} (chance {f(r['test_id_chance'])})", highlight=False)
    g = result.get("generated")
    if g:
        stdout.print(f"output similarity to prompt {f(g['similarity'])}  ID accuracy {f(g['id_accuracy'])}"
                     f"  WER {f(g['wer'])}  (same sentences: {f(g['wer_matched'])} vs real "
                     f"{f(g['wer_real'])}, ratio {f(g['wer_ratio'])}; {g['matched']} of "
                     f"{g['outputs']} outputs)", highlight=False)
        if g.get("test_id_outputs"):
            stdout.print(f"       ID among the test voices alone {f(g['test_id_accuracy'])} "
                         f"({g['test_id_outputs']} outputs)", highlight=False)
    if out:
        stdout.print(f"written: {out}")
