"""The ``aimusic`` command line: thin Typer commands over library functions.

Each command parses its options, calls one library function, and prints where its
artifacts went. Failures a user can cause (:class:`AimusicError`) print one line and exit
with status 1; ``-v`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aimusic import __version__
from aimusic.errors import AimusicError
from aimusic.runtime import console, settings, setup_logging, stdout

app = typer.Typer(
    name="aimusic",
    help="Neural audio codec, semantic tokens and token language models for music and voice.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
eval_app = typer.Typer(help="Measure a stage on held-out audio.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn expected failures into one readable line and exit status 1."""
    try:
        yield
    except AimusicError as e:
        if settings.verbose:
            console.print_exception()
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aimusic {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logs, tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors.")] = False,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present, with bf16 autocast), cpu or cuda.")
    ] = "auto",
    seed: Annotated[
        Optional[int], typer.Option(help="Seed every random number generator.")
    ] = None,
) -> None:
    settings.verbose, settings.quiet, settings.device, settings.seed = verbose, quiet, device, seed
    setup_logging(verbose, quiet)
    from aimusic.runtime import configure_threads, seed_everything

    configure_threads()
    if seed is not None:
        seed_everything(seed)


def _print_kv(d: dict[str, Any], indent: str = "") -> None:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            stdout.print(f"{indent}[bold]{k}[/]:", highlight=False)
            _print_kv(v, indent + "  ")
        else:
            stdout.print(f"{indent}[bold]{k}[/]: {v}", highlight=False)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Model file, codes file or token directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Describe an aimusic artifact: kind, format, config, size, creation and dependencies."""
    from aimusic.artifacts import describe

    with handle_errors():
        d = describe(path)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
    else:
        _print_kv(d)


ModelsOpt = Annotated[
    Optional[Path],
    typer.Option("--models", help="Models directory [default: $AIMUSIC_MODELS or ./models]."),
]
PresetOpt = Annotated[str, typer.Option(help="Size preset: tiny (tests), small (CPU), base (GPU).")]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML file with 'model:' and 'train:' sections; flags win."),
]


def _models_dir(models: Path | None) -> Path:
    from aimusic.runtime import default_models_dir

    return models if models is not None else Path(default_models_dir())


def _codec_path(codec: Path | None, models: Path | None) -> Path:
    return codec if codec is not None else _models_dir(models) / "codec.safetensors"


@app.command("train-codec")
def train_codec_cmd(
    audio_dirs: Annotated[
        list[Path], typer.Argument(help="Folders of audio (searched recursively; val/ and test/ "
                                        "subfolders are held out).")
    ],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Model file [default: MODELS/codec.safetensors].")
    ] = None,
    models: ModelsOpt = None,
    preset: PresetOpt = "small",
    config: ConfigOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    minutes: Annotated[
        Optional[float], typer.Option(help="Stop after this many minutes of training.")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Segments per step.")] = None,
    val_dir: Annotated[
        Optional[Path], typer.Option(help="Held-out audio [default: a val/ folder, or 5%].")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the saved training state.")] = False,
) -> None:
    """Train the neural audio codec (encoder, residual VQ, decoder) on a folder of audio."""
    from aimusic.codec.model import PRESETS
    from aimusic.codec.train import TRAIN_PRESETS, CodecTrainConfig, train_codec
    from aimusic.config import build_config, load_yaml, update_config
    from aimusic.runtime import resolve_device

    with handle_errors():
        out = out or _models_dir(models) / "codec.safetensors"
        model_cfg = build_config(PRESETS, preset)
        train_cfg: CodecTrainConfig = build_config(TRAIN_PRESETS, preset)
        if config is not None:
            sections = load_yaml(config)
            unknown = set(sections) - {"model", "train"}
            if unknown:
                raise AimusicError(f"{config}: unknown section(s) {sorted(unknown)}; "
                                   "use 'model:' and 'train:'")
            model_cfg = update_config(model_cfg, sections.get("model") or {}, str(config))
            train_cfg = update_config(train_cfg, sections.get("train") or {}, str(config))
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size}
        if settings.seed is not None:
            flags["seed"] = settings.seed
        train_cfg = update_config(train_cfg, {k: v for k, v in flags.items() if v is not None},
                                  "flags")
        metrics = train_codec(list(audio_dirs), out, model_cfg, train_cfg, resolve_device(),
                              resume=resume, val_dir=val_dir)
    from aimusic.artifacts import state_path

    stdout.print(f"codec: {out}  (training state: {state_path(out)})", highlight=False)
    stdout.print(f"validation: {json.dumps(metrics)}", highlight=False)


def _codec_each(inputs: list[Path], out: Path | None, codec_file: Path,
                target_for: Callable[[Path], Path], run: Callable[..., Any]) -> None:
    """Load the codec once, then ``run(codec, src, dst, device)`` for each input."""
    from aimusic.codec.model import load_codec
    from aimusic.runtime import resolve_device

    with handle_errors():
        if out is not None and len(inputs) > 1:
            raise AimusicError("-o names one output; with several inputs, outputs go beside each")
        device = resolve_device()
        model = load_codec(codec_file, device)
        for path in inputs:
            target = out or target_for(path)
            run(model, path, target, device)
            stdout.print(f"{path} -> {target}", highlight=False)


@app.command()
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3).")],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Codes file (one input only).")
    ] = None,
    bandwidth: Annotated[
        Optional[float], typer.Option(help="kbps: 1.5, 3 or 6 at the default [default: all].")
    ] = None,
    codec: Annotated[Optional[Path], typer.Option(help="Codec model file.")] = None,
    models: ModelsOpt = None,
) -> None:
    """Encode audio into codec tokens (IN.codes.safetensors beside each input)."""
    from aimusic.codec.stream import encode_file

    _codec_each(inputs, out, _codec_path(codec, models),
                lambda p: p.with_name(p.stem + ".codes.safetensors"),
                lambda model, src, dst, device: encode_file(model, src, dst, bandwidth, device))


@app.command()
def decode(
    inputs: Annotated[list[Path], typer.Argument(help="Codes files from `aimusic encode`.")],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output wav (one input only).")
    ] = None,
    codec: Annotated[Optional[Path], typer.Option(help="Codec model file.")] = None,
    models: ModelsOpt = None,
) -> None:
    """Decode codec tokens back to audio (IN.wav beside each input)."""
    from aimusic.codec.stream import decode_file

    _codec_each(inputs, out, _codec_path(codec, models),
                lambda p: p.with_name(p.name.removesuffix(".safetensors").removesuffix(".codes")
                                      + ".wav"),
                decode_file)


@eval_app.command("codec")
def eval_codec_cmd(
    audio_dir: Annotated[Path, typer.Argument(help="Audio to measure on (never trained on).")],
    bandwidth: Annotated[
        Optional[list[float]], typer.Option(help="kbps to test; repeat [default: 1.5 3 6].")
    ] = None,
    vs_opus: Annotated[bool, typer.Option(help="Also run Opus at the same bitrates.")] = False,
    opus_kbps: Annotated[
        Optional[list[float]], typer.Option(help="Opus bitrates [default: the codec's, and 12].")
    ] = None,
    clips: Annotated[int, typer.Option(help="At most this many files.")] = 20,
    seconds: Annotated[float, typer.Option(help="Seconds from the middle of each file.")] = 10.0,
    codec: Annotated[Optional[Path], typer.Option(help="Codec model file.")] = None,
    models: ModelsOpt = None,
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
        device = resolve_device()
        path = _codec_path(codec, models)
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
    if out:
        stdout.print(f"written: {out}")


def main() -> None:
    app()
