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
from rich.markup import escape

from aimusic import __version__
from aimusic.errors import AimusicError
from aimusic.fileio import check_writable
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
        # escaped: messages hold paths and text like "aimusic[eval]" that are not markup
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
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
    typer.Option("--models", help="Models directory (default: $AIMUSIC_MODELS or ./models; with "
                                  "neither, commands that read models use the bundled ones)."),
]
PresetOpt = Annotated[str, typer.Option(
    help="Size preset: tiny (tests), small (CPU), base (GPU); train-codec and train-semantic "
         "also take speech (for a speech corpus), and train-codec music (its default: the "
         "spectral codec for music on a CPU; small is the earlier conv codec).")]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML file with 'model:' and 'train:' sections; flags win."),
]


def _models_dir(models: Path | None) -> Path:
    from aimusic.runtime import default_models_dir

    return models if models is not None else Path(default_models_dir())


def _models_in(models: Path | None, bundle: str = "music") -> Path:
    """Models to read (not to write): like _models_dir, with the bundled models (music, or
    voice for `speak`) when there is no ./models at all."""
    from aimusic.runtime import models_to_read

    return models_to_read(models, bundle)


def _codec_path(codec: Path | None, models: Path | None) -> Path:
    return codec if codec is not None else _models_in(models) / "codec.safetensors"


def _train_configs(presets: dict, train_presets: dict, preset: str, config: Path | None,
                   flags: dict[str, Any]) -> tuple[Any, Any]:
    """Model and training configs: the preset, then the YAML file's 'model:' and 'train:'
    sections, then the flags that were given (and --seed)."""
    from aimusic.config import build_config, load_yaml, update_config

    model_cfg = build_config(presets, preset)
    train_cfg = build_config(train_presets, preset)
    if config is not None:
        sections = load_yaml(config)
        unknown = set(sections) - {"model", "train"}
        if unknown:
            raise AimusicError(f"{config}: unknown section(s) {sorted(unknown)}; "
                               "use 'model:' and 'train:'")
        model_cfg = update_config(model_cfg, sections.get("model") or {}, str(config))
        train_cfg = update_config(train_cfg, sections.get("train") or {}, str(config))
    if settings.seed is not None:
        flags = {**flags, "seed": settings.seed}
    train_cfg = update_config(train_cfg, {k: v for k, v in flags.items() if v is not None}, "flags")
    return model_cfg, train_cfg


@app.command("train-codec")
def train_codec_cmd(
    audio_dirs: Annotated[
        list[Path], typer.Argument(help="Folders of audio (searched recursively; val/ and test/ "
                                        "subfolders are held out).")
    ],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Model file (default: MODELS/codec.safetensors).")
    ] = None,
    models: ModelsOpt = None,
    preset: PresetOpt = "music",
    config: ConfigOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    minutes: Annotated[
        Optional[float], typer.Option(help="Stop after this many minutes of training.")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Segments per step.")] = None,
    val_dir: Annotated[
        Optional[Path], typer.Option(help="Held-out audio (default: a val/ folder, or 5%).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the saved training state.")] = False,
    init: Annotated[
        Optional[Path], typer.Option(help="Start from this codec's weights and codebooks (its "
                                          "architecture; a fresh optimizer), e.g. to train "
                                          "it on with new losses.")
    ] = None,
    decoder_only: Annotated[
        bool, typer.Option("--decoder-only", help="With --init: train the decoder alone. The "
                                                  "encoder and codebooks stay, so the codec's "
                                                  "tokens, and LMs trained on them, stay valid.")
    ] = False,
) -> None:
    """Train the neural audio codec (encoder, residual VQ, decoder) on a folder of audio."""
    from aimusic.codec.model import PRESETS
    from aimusic.codec.train import TRAIN_PRESETS, train_codec
    from aimusic.runtime import resolve_device

    with handle_errors():
        out = check_writable(out or _models_dir(models) / "codec.safetensors")
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size,
                 "decoder_only": decoder_only or None}
        model_cfg, train_cfg = _train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
        metrics = train_codec(list(audio_dirs), out, model_cfg, train_cfg, resolve_device(),
                              resume=resume, val_dir=val_dir, init=init)
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
        targets = [check_writable(out or target_for(path)) for path in inputs]
        model = load_codec(codec_file, device)
        for path, target in zip(inputs, targets):
            run(model, path, target, device)
            stdout.print(f"{path} -> {target}", highlight=False)


@app.command("train-semantic")
def train_semantic_cmd(
    audio_dirs: Annotated[
        list[Path], typer.Argument(help="Folders of audio (searched recursively; val/ and test/ "
                                        "subfolders are held out).")
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("-o", "--out", help="Model file (default: MODELS/semantic.safetensors)."),
    ] = None,
    models: ModelsOpt = None,
    clusters: Annotated[Optional[int], typer.Option(help="Number of tokens (default: 512).")] = None,
    iterations: Annotated[
        int, typer.Option(min=1, max=2, help="1: k-means on MFCC+chroma. 2: then a masked-"
                                             "prediction transformer, k-means on its middle layer.")
    ] = 2,
    first: Annotated[
        Optional[Path], typer.Option(help="Iteration-1 model to start iteration 2 from "
                                          "(default: train one, saved as OUT.it1.safetensors).")
    ] = None,
    preset: PresetOpt = "small",
    config: ConfigOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Transformer steps (iteration 2).")] = None,
    minutes: Annotated[
        Optional[float], typer.Option(help="Stop the transformer after this many minutes.")
    ] = None,
    val_dir: Annotated[
        Optional[Path], typer.Option(help="Held-out audio (default: a val/ folder, or 5%).")
    ] = None,
) -> None:
    """Train the self-supervised semantic tokenizer (25 tokens/s) on a folder of audio."""
    from dataclasses import replace

    from aimusic.runtime import resolve_device
    from aimusic.semantic.model import PRESETS, load_semantic
    from aimusic.semantic.train import TRAIN_PRESETS, train_semantic

    with handle_errors():
        out = check_writable(out or _models_dir(models) / "semantic.safetensors")
        model_cfg, train_cfg = _train_configs(PRESETS, TRAIN_PRESETS, preset, config,
                                              {"steps": steps, "minutes": minutes})
        if clusters is not None:
            model_cfg = replace(model_cfg, clusters=clusters)
        start = load_semantic(first) if first is not None else None
        if start is not None and start.cfg.iteration != 1:
            raise AimusicError(f"{first}: --first must be an iteration-1 model")
        result = train_semantic(list(audio_dirs), out, model_cfg, train_cfg, iterations,
                                resolve_device(), first=start, val_dir=val_dir)
    stdout.print(f"semantic: {result['out']}", highlight=False)
    stdout.print(json.dumps({k: v for k, v in result.items() if k != "out"}), highlight=False,
                 soft_wrap=True)


@app.command()
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3).")],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Codes file (one input only).")
    ] = None,
    bandwidth: Annotated[
        Optional[float], typer.Option(help="kbps: 1.5, 3 or 6 at the default (default: all).")
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


def _semantic_path(semantic: Path | None, models: Path | None) -> Path:
    return semantic if semantic is not None else _models_in(models) / "semantic.safetensors"


@app.command("tokenize")
def tokenize_cmd(
    audio_dir: Annotated[Path, typer.Argument(help="Folder of audio (searched recursively).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Token directory.")] = Path("tokens"),
    codec: Annotated[
        Optional[Path], typer.Option(help="Codec model (default: MODELS/codec.safetensors).")
    ] = None,
    semantic: Annotated[
        Optional[Path], typer.Option(help="Semantic model (default: MODELS/semantic.safetensors).")
    ] = None,
    models: ModelsOpt = None,
    workers: Annotated[
        Optional[int], typer.Option(help="Worker processes (default: one per core).")
    ] = None,
    num_shards: Annotated[
        Optional[int], typer.Option(help="Split the job into this many parts, e.g. a cluster "
                                         "job array (default: $WORLD_SIZE or 1).")
    ] = None,
    shard_index: Annotated[
        Optional[int], typer.Option(help="The part this run makes, from 0 (default: $RANK or 0).")
    ] = None,
    files_per_shard: Annotated[
        int, typer.Option(help="Files per shard file: the unit of resume and of splitting.")
    ] = 64,
    min_seconds: Annotated[
        Optional[float], typer.Option(help="Skip shorter files (default: one semantic token).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with status 1 if any file is skipped.")] = False,
) -> None:
    """Semantic and acoustic tokens of a folder of audio, in shards; a rerun resumes."""
    from aimusic.codec.model import load_codec
    from aimusic.runtime import resolve_device
    from aimusic.semantic.model import load_semantic
    from aimusic.tokens.tokenize import resolve_split, tokenize

    with handle_errors():
        parts, index = resolve_split(num_shards, shard_index)
        check_writable(out, folder=True)
        device = resolve_device()
        codec_model = load_codec(_codec_path(codec, models), device)
        semantic_model = load_semantic(_semantic_path(semantic, models), device)
        r = tokenize(audio_dir, out, codec_model, semantic_model, workers=workers,
                     num_parts=parts, part_index=index, files_per_shard=files_per_shard,
                     min_seconds=min_seconds, device=str(device), progress=True)
    _print_skipped(r.errors_path)
    part = f"part {index} of {parts}: " if parts > 1 else ""
    stdout.print(f"{part}{r.items} files tokenized, {r.skipped} skipped ({r.errors_path}); "
                 f"{r.seconds / 3600:.2f} h of audio, {r.semantic_tokens:,} semantic tokens, "
                 f"{r.acoustic_frames:,} acoustic frames", highlight=False, soft_wrap=True)
    stdout.print(f"{r.shards} shards ({r.resumed_shards} already done), {r.workers} workers, "
                 f"{r.wall_seconds:.1f} s, {r.x_realtime:.1f}x real time",
                 highlight=False, soft_wrap=True)
    stdout.print(f"manifest: {r.manifest}", highlight=False, soft_wrap=True)
    if parts > 1:
        stdout.print(f"dataset: {r.merged} (all parts done)" if r.merged else
                     f"when every part is done: aimusic tokenize-merge {out}",
                     highlight=False, soft_wrap=True)
    _strict_exit(strict, r.skipped, r.errors_path)


def _print_skipped(errors_path: Path, limit: int = 5) -> None:
    """The first skipped files and why, on stderr; the errors file has them all."""
    lines = errors_path.read_text().splitlines() if errors_path.exists() else []
    for line in lines[:limit]:
        e = json.loads(line)
        console.print(f"[yellow]skipped[/] {e['source']}: {e['reason']}",
                      highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"[yellow]skipped[/] ... {len(lines) - limit} more in {errors_path}",
                      highlight=False, soft_wrap=True)


def _strict_exit(strict: bool, skipped: int, errors_path: Path) -> None:
    if strict and skipped:
        console.print(f"[bold red]error:[/] {skipped} file(s) skipped (--strict); see {errors_path}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command("tokenize-merge")
def tokenize_merge_cmd(
    tokens_dir: Annotated[
        Path, typer.Argument(help="Token directory the parts of a split run wrote into.")
    ] = Path("tokens"),
    num_shards: Annotated[
        Optional[int], typer.Option(help="Which split to merge, when parts of several are there.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with status 1 if any file was skipped.")] = False,
) -> None:
    """Join the part manifests of a split `aimusic tokenize` run into one manifest.json."""
    from aimusic.tokens.shards import ERRORS, merge_parts

    with handle_errors():
        path = merge_parts(tokens_dir, num_shards)
    m = json.loads(path.read_text())
    stdout.print(f"{len(m['items'])} items from {m['parts']} parts, {m['errors']} skipped "
                 f"({tokens_dir / ERRORS}); {m['seconds'] / 3600:.2f} h of audio",
                 highlight=False, soft_wrap=True)
    stdout.print(f"manifest: {path}", highlight=False, soft_wrap=True)
    _strict_exit(strict, int(m["errors"]), tokens_dir / ERRORS)


StageOpt = Annotated[
    str, typer.Option(help="all (semantic, coarse, fine; with --layout delay: semantic, delay), "
                           "or one of semantic, coarse, fine, delay, acoustic (coarse LM on "
                           "acoustic tokens alone, AudioLM's acoustic-only baseline; never in "
                           "all).")
]
LayoutOpt = Annotated[
    str, typer.Option(help="flat: AudioLM's coarse and fine stages; delay: MusicGen's one "
                           "acoustic stage (lm-delay).")
]


def _print_lm_result(stage: str, r: dict[str, Any]) -> None:
    speed = f"  {r['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in r else ""
    stdout.print(f"lm-{stage}: {r.get('out') or r.get('model')}  val {r['val_ce']:.4f} nats/token "
                 f"(unigram {r['unigram_ce']:.4f}, bigram {r['bigram_ce']:.4f}; "
                 f"{r['val_tokens']:,} tokens){speed}", highlight=False, soft_wrap=True)


@app.command("train-lm")
def train_lm_cmd(
    tokens_dir: Annotated[
        Path, typer.Argument(help="Token directory from `aimusic tokenize` (val/ and test/ "
                                  "items are held out, else a stable 5%).")
    ] = Path("tokens"),
    stage: StageOpt = "all",
    layout: LayoutOpt = "flat",
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Directory of the lm-STAGE.safetensors "
                                                         "files (default: MODELS).")
    ] = None,
    models: ModelsOpt = None,
    preset: PresetOpt = "small",
    config: ConfigOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Steps per stage.")] = None,
    minutes: Annotated[
        Optional[float], typer.Option(help="Stop each stage after this many minutes.")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Windows per step.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the saved training states.")] = False,
) -> None:
    """Train the token language models (semantic, coarse, fine) on a token directory."""
    from aimusic.lm.model import PRESETS
    from aimusic.lm.train import TRAIN_PRESETS, stages_for, train_lm
    from aimusic.runtime import resolve_device

    with handle_errors():
        out_dir = check_writable(out or _models_dir(models), folder=True)
        stages = stages_for(stage, layout)
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size}
        model_cfg, train_cfg = _train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
        results = train_lm(tokens_dir, out_dir, stages, model_cfg, train_cfg, resolve_device(),
                           resume=resume)
    for s, r in results.items():
        if r:  # empty on processes other than the main one
            _print_lm_result(s, r)


@app.command("train-tts")
def train_tts_cmd(
    tokens_dir: Annotated[
        Path, typer.Argument(help="Token directory of a speech corpus's wav folder (`aimusic "
                                  "tokenize CORPUS/wav -o DIR`; val/ items validate, test/ "
                                  "items are left out).")
    ],
    corpus: Annotated[
        Path, typer.Option("--corpus", help="The speech corpus (its manifest.jsonl gives each "
                                            "file's phonemes).")
    ] = Path("data/speech"),
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Reading LM file (default: "
                                                         "MODELS/lm-reading.safetensors).")
    ] = None,
    models: ModelsOpt = None,
    preset: PresetOpt = "small",
    config: ConfigOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Stop after this many minutes.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Sentences per step.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the saved training state.")] = False,
    voice_tokens: Annotated[
        int, typer.Option("--voice-tokens", help="Semantic tokens of the voice the reader hears "
                                                 "before each sentence (75: 3 s), taken from "
                                                 "another sentence in that voice; 0: none "
                                                 "(the first readers' layout).")
    ] = 75,
) -> None:
    """Train the reading LM of `speak`: phonemes -> semantic tokens in the voice it hears."""
    from aimusic.lm.model import PRESETS
    from aimusic.lm.train import TRAIN_PRESETS
    from aimusic.runtime import resolve_device
    from aimusic.voice.tts import READING_FILE, train_reading

    with handle_errors():
        target = check_writable(out or _models_dir(models) / READING_FILE)
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size}
        model_cfg, train_cfg = _train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
        if voice_tokens < 0:
            raise AimusicError(f"--voice-tokens {voice_tokens}: give 0 or more")
        r = train_reading(tokens_dir, corpus, target, model_cfg, train_cfg, resolve_device(),
                          resume=resume, show_progress=not settings.quiet,
                          voice_tokens=voice_tokens)
    stdout.print(f"lm-reading: {r['out']}  val {r['val_ce']:.4f} nats/token (unigram "
                 f"{r['unigram_ce']:.4f}, bigram {r['bigram_ce']:.4f}; {r['train_sentences']} "
                 f"sentences trained on, {r['val_sentences']} validated)", highlight=False,
                 soft_wrap=True)


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

    import numpy as np

    from aimusic.audio import list_audio_files
    from aimusic.codec.evaluate import opus_roundtrip
    from aimusic.codec.stream import decode_stream, encode_stream
    from aimusic.gen.evaluate import roundtrip_coherence

    sr = model.cfg.sample_rate

    def through(levels: int) -> Callable[[Any], Any]:
        def trip(x: Any) -> Any:
            codes, _ = encode_stream(model, iter([x]), levels, device=device)
            return np.concatenate(list(decode_stream(model, codes, device=device)))[:x.size]
        return trip

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
    """Do tokens follow the music or the instrument? NMI between two renders' tokens."""
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
        for path in semantic or [_semantic_path(None, models)]:
            m = load_semantic(path)
            tokenizers[f"{path.name} (iteration {m.cfg.iteration})"] = m.tokens
        codec_file = _codec_path(codec, models)
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
                     f"other piece {r['other']:.3f}; {r['frames']} frames)", highlight=False,
                     soft_wrap=True)


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
        result = evaluate_lms(tokens_dir, _models_in(models), stages_for(stage, layout),
                              resolve_device(), windows, batch_size)
        if out:
            write_json(out, {"data": str(tokens_dir), "stages": result})
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for s, r in result.items():
        _print_lm_result(s, r)


TemperatureOpt = Annotated[
    Optional[list[float]],
    typer.Option("--temperature", help="Sampling temperature: once for every stage, or once per "
                                       "stage in order (default 1.0 0.8 0.6; delay: 1.0 0.8; "
                                       "acoustic: 0.8 0.6)."),
]
TopKOpt = Annotated[
    Optional[list[int]],
    typer.Option("--top-k", help="Keep the k most likely tokens (0: all); once, or per stage "
                                 "(default 250)."),
]
TopPOpt = Annotated[
    Optional[list[float]],
    typer.Option("--top-p", help="Nucleus sampling mass (1: off); once, or per stage (default off)."),
]
GenLayoutOpt = Annotated[
    Optional[str],
    typer.Option("--layout", help="flat|delay|acoustic: flat (semantic, coarse, fine LMs), delay "
                                  "(semantic and delay LMs) or acoustic (acoustic and fine LMs, no "
                                  "semantic stage: AudioLM's acoustic-only baseline); default "
                                  "flat, or delay when only lm-delay is there."),
]
GenSeedOpt = Annotated[
    Optional[int], typer.Option("--seed", help="Seed of the sampling: same seed, same audio "
                                               "(default: the global --seed, else a fresh one).")
]
CacheOpt = Annotated[
    bool, typer.Option("--cache/--no-cache", help="KV-cached decoding; --no-cache recomputes every "
                                                  "step (same tokens, for comparison; slow).")
]
GenCodecOpt = Annotated[
    Optional[Path], typer.Option("--codec", help="Codec model (default: MODELS/codec.safetensors).")
]
GenSemanticOpt = Annotated[
    Optional[Path],
    typer.Option("--semantic", help="Semantic model (default: MODELS/semantic.safetensors)."),
]


def _load_chain(models: Path | None, layout: str | None, codec: Path | None,
                semantic: Path | None, bundle: str = "music") -> Any:
    from aimusic.gen import load_chain
    from aimusic.runtime import resolve_device

    return load_chain(_models_in(models, bundle), layout, resolve_device(), codec, semantic)


def _print_generated(r: dict[str, Any], src: str) -> None:
    from aimusic.gen import format_timings

    stdout.print(f"{src}{r['out']}  ({r['audio'].size / r['sample_rate']:.2f} s, seed {r['seed']})",
                 highlight=False, soft_wrap=True)
    if settings.verbose:
        console.print(format_timings(r), highlight=False, soft_wrap=True)


@app.command("continue")
def continue_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Prompt audio files (wav, flac, ogg, mp3).")],
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds to add to each file.")],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output wav (one input only; default "
                                                         "IN.continued.wav beside each input).")
    ] = None,
    prompt_seconds: Annotated[
        Optional[float], typer.Option(help="Use the last this many seconds as the prompt "
                                           "(default: what the semantic LM's context keeps; "
                                           "acoustic layout: the acoustic LM's).")
    ] = None,
    continuation_only: Annotated[
        bool, typer.Option(help="Write only the new audio, not the prompt file before it.")
    ] = False,
    layout: GenLayoutOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: GenSeedOpt = None,
    cache: CacheOpt = True,
    models: ModelsOpt = None,
    codec: GenCodecOpt = None,
    semantic: GenSemanticOpt = None,
    voice_match: Annotated[
        int, typer.Option("--voice-match", min=0, metavar="K",
                          help="Speech: re-express each new frame as the mean of the prompt's K "
                               "nearest frames, which keeps the speaker's voice (4 is a good "
                               "start; 0: off, the default, right for music).")
    ] = 0,
    fine: Annotated[
        bool, typer.Option("--fine/--no-fine", help="Run the fine stage; --no-fine decodes the "
                                                    "coarse levels alone (faster, at the codec's "
                                                    "lower bandwidth).")
    ] = True,
    eq: Annotated[
        bool, typer.Option("--prompt-eq/--no-prompt-eq",
                           help="Speech: equalize the new audio to undo how the codec colours "
                                "the prompt's voice (the prompt against the codec's rendering "
                                "of it). Off by default: on music it paints the prompt's "
                                "partials onto the continuation.")
    ] = False,
) -> None:
    """Continue music (or speech, with speech models): the semantic, coarse and fine LMs
    extend each file by --seconds."""
    from aimusic.gen import continue_file, sampling_for

    with handle_errors():
        if out is not None and len(inputs) > 1:
            raise AimusicError("-o names one output; with several inputs, outputs go beside each")
        targets = [check_writable(out or path.with_name(path.stem + ".continued.wav"))
                   for path in inputs]
        chain = _load_chain(models, layout, codec, semantic)
        sampling = sampling_for(chain.stages, temperature, top_k, top_p)
        for path, target in zip(inputs, targets):
            r = continue_file(chain, path, target, seconds, prompt_seconds=prompt_seconds,
                              continuation_only=continuation_only, sampling=sampling,
                              seed=seed if seed is not None else settings.seed, use_cache=cache,
                              progress=not settings.quiet, voice_match=voice_match, fine=fine,
                              eq=eq)
            _print_generated(r, f"{path} -> ")


@app.command("generate")
def generate_cmd(
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds per sample.")],
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Number of samples.")] = 1,
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Folder of the samples (sample-000.wav, ...).")
    ] = Path("generated"),
    layout: GenLayoutOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: GenSeedOpt = None,
    cache: CacheOpt = True,
    models: ModelsOpt = None,
    codec: GenCodecOpt = None,
    semantic: GenSemanticOpt = None,
) -> None:
    """Unconditional samples from the chain of LMs (sample i uses seed + i)."""
    from aimusic.audio import save_audio
    from aimusic.gen import generate_audio, sampling_for

    with handle_errors():
        check_writable(out, folder=True)
        chain = _load_chain(models, layout, codec, semantic)
        sampling = sampling_for(chain.stages, temperature, top_k, top_p)
        base = seed if seed is not None else settings.seed
        if base is None:
            import random

            base = random.SystemRandom().randrange(2**31 - n)
        for i in range(n):
            r = generate_audio(chain, seconds, sampling=sampling, seed=base + i, use_cache=cache,
                               progress=not settings.quiet, label=f"{i + 1}/{n} " if n > 1 else "")
            r["out"] = save_audio(out / f"sample-{i:03d}.wav", r["audio"], r["sample_rate"])
            _print_generated(r, "")


@app.command("speak")
def speak_cmd(
    text: Annotated[Optional[str], typer.Argument(help="What to say (or --text-file).")] = None,
    voice: Annotated[
        Optional[Path], typer.Option("--voice", help="A recording of the voice to speak in (at "
                                                     "least 1 s; 3 s or more is heard best; "
                                                     "default: the bundled example "
                                                     "voice, one the bundled models never "
                                                     "trained on).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output wav (default speech.wav); with "
                                                         "--text-file, a folder of line-001.wav, "
                                                         "... (default speech/)")
    ] = None,
    text_file: Annotated[
        Optional[Path], typer.Option("--text-file", help="Say each non-empty line of this file.")
    ] = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: GenSeedOpt = None,
    models: ModelsOpt = None,
    voice_match: Annotated[
        Optional[int], typer.Option("--voice-match", min=0, metavar="K",
                                    help="Re-express each new frame as the mean of the voice's "
                                         "K nearest frames, which keeps the voice "
                                         "(default 4; 0 turns it off).")
    ] = None,
    fine: Annotated[
        Optional[bool], typer.Option("--fine/--no-fine", show_default=False,
                                     help="Run the fine stage, or decode the coarse levels "
                                          "alone (faster; the voice judges measure no "
                                          "difference with the bundled models).")
    ] = None,
    eq: Annotated[
        bool, typer.Option("--prompt-eq/--no-prompt-eq",
                           help="Equalize the speech to undo how the codec colours the voice "
                                "(the voice against the codec's rendering of it).")
    ] = True,
) -> None:
    """Text to speech in the voice of --voice: the reading LM, then the coarse and fine LMs.
    --temperature, --top-k and --top-p take one value, or three (the option given three
    times): the reading LM's (in the semantic stage's place), the coarse LM's and the fine
    LM's."""
    from aimusic.audio import load_audio, save_audio
    from aimusic.gen import sampling_for
    from aimusic.lm.model import load_lm
    from aimusic.text.phonemes import foreign_letters
    from aimusic.voice.tts import EXAMPLE_VOICE, READING_FILE, SPEAK_FINE, VOICE_MATCH, speak_text

    with handle_errors():
        if (text is None) == (text_file is None):
            raise AimusicError("give the text to say, or --text-file (not both)")
        if text_file is not None:
            try:
                lines = [ln.strip() for ln in text_file.read_text().splitlines() if ln.strip()]
            except OSError as e:
                raise AimusicError(f"{text_file}: cannot read ({e.strerror})") from None
            if not lines:
                raise AimusicError(f"{text_file}: no text in it")
            folder = out or Path("speech")
            targets = [folder / f"line-{i + 1:03d}.wav" for i in range(len(lines))]
        else:
            lines, targets = [str(text)], [out or Path("speech.wav")]
        for target in targets:
            check_writable(target)
        chain = _load_chain(models, "flat", None, None, bundle="voice")
        lm = load_lm(_models_in(models, "voice") / READING_FILE, "reading", chain.device)
        if voice is None:
            voice = EXAMPLE_VOICE
            console.print(f"no --voice: speaking in the bundled example voice ({voice.name}, "
                          "flite's rms, a voice the bundled models never trained on)",
                          highlight=False, soft_wrap=True)
        audio = load_audio(voice, chain.sample_rate)
        sampling = sampling_for(chain.stages, temperature, top_k, top_p)
        base = seed if seed is not None else settings.seed
        for i, (line, target) in enumerate(zip(lines, targets)):
            if foreign := foreign_letters(line):
                console.print(f"[yellow]warning[/] the English voice cannot read {foreign[:20]!r} "
                              "(not Latin letters): it will name them instead, e.g. "
                              "\"Chinese letter\"", highlight=False, soft_wrap=True)
            r = speak_text(chain, lm, line, audio, voice_name=str(voice), sampling=sampling,
                           seed=None if base is None else base + i, progress=not settings.quiet,
                           voice_match=VOICE_MATCH if voice_match is None else voice_match,
                           fine=SPEAK_FINE if fine is None else fine, eq=eq)
            r["out"] = save_audio(target, r["audio"], r["sample_rate"])
            _print_generated(r, "")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="Report folder.")] = Path("demo"),
    prompt: Annotated[
        Optional[Path], typer.Option("--prompt", help="Prompt audio (default: the bundled example, "
                                                      "a recorded piece the models never saw).")
    ] = None,
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of the file used as prompt.")] = 5.0,
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds to continue.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    models: ModelsOpt = None,
    voice_models: Annotated[
        Optional[Path], typer.Option("--voice-models", help="Models for the spoken sentence "
                                                            "(default: the bundled voice models).")
    ] = None,
) -> None:
    """Continue a recorded piece and speak a sentence with the bundled models; writes
    OUT/report.html."""
    from aimusic.demo import run_demo
    from aimusic.runtime import bundled_models_dir

    voice_dir = voice_models or bundled_models_dir("voice")
    with handle_errors():
        check_writable(out, folder=True)
        m = run_demo(out, _models_in(models), prompt, prompt_seconds, seconds, seed,
                     progress=not settings.quiet, voice_models=voice_dir)
    stdout.print(m["timings_line"], highlight=False, soft_wrap=True)
    for f in m["files"].values():
        stdout.print(f"{out / f['audio']}  {f['what']}", highlight=False, soft_wrap=True)
    v = m["voice"]
    if v is not None:
        stdout.print(v["timings_line"], highlight=False, soft_wrap=True)
        for f in v["files"].values():
            stdout.print(f"{out / f['audio']}  {f['what']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"note: {m['voice_note']}", highlight=False, soft_wrap=True)
    stdout.print(f"report: {out / 'report.html'}  ({m['elapsed_s']:.1f} s)", highlight=False)


@eval_app.command("continuation")
def eval_continuation_cmd(
    audio: Annotated[list[Path], typer.Argument(help="Held-out audio files or folders.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Report folder: metrics.json, "
                                                          "report.html, audio and PNGs.")] = Path("report"),
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of each clip used as the prompt.")] = 5.0,
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds continued and measured.")] = 10.0,
    clips: Annotated[int, typer.Option(help="At most this many clips (0: every file).")] = 8,
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
    from aimusic.gen.evaluate import evaluate_continuation, summary_rows
    from aimusic.lm.train import lm_path

    with handle_errors():
        check_writable(out, folder=True)
        files = [f for a in audio for f in list_audio_files(a)]
        if not files:
            raise AimusicError(f"no audio files in {', '.join(map(str, audio))}")
        chains: dict[str, Any] = {}
        sr = 24000
        if generate:
            mdir = _models_in(models)
            names = layout or [name for name, stages in LAYOUT_STAGES.items()
                               if all(lm_path(mdir, s).exists() for s in stages)]
            if not names:
                raise AimusicError(f"no LMs in {mdir}: train them (`aimusic train-lm`), name --models, "
                                   "or pass --no-generate to check the measures alone")
            for name in names:
                chains[name] = _load_chain(models, name, None, None)
            sr = next(iter(chains.values())).sample_rate
        metrics = evaluate_continuation(files, out, chains, sr, prompt_seconds, seconds, offset, clips,
                                        seed, with_constructed, progress=not settings.quiet, eq=eq,
                                        notes=notes)
    if as_json:
        typer.echo(json.dumps({"coherence": metrics["coherence"], "notes": metrics["notes"],
                               "report": str(out / "report.html")}, indent=2))
        return
    from rich.table import Table

    t = Table(title=f"coherence, {len(metrics['clips'])} clips ({prompt_seconds:g} s prompt, "
                    f"{seconds:g} s continued)")
    for h in ["row", "harmony", "rhythm", "timbre", "repetition", "overall"]:
        t.add_column(h, justify="left" if h == "row" else "right")
    for r in summary_rows(metrics):  # the last column (what a row is) is in the report
        t.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r[:-1]])
    stdout.print(t)
    if metrics["notes"]:
        from aimusic.gen.evaluate import NOTE_FIGURES

        nt = Table(title="notes (basic-pitch), against the prompt's")
        for h in ["row", *NOTE_FIGURES]:
            nt.add_column(h, justify="left" if h == "row" else "right")
        for row, v in metrics["notes"].items():
            nt.add_row(row, *[f"{v[k]:.2f}" for k in NOTE_FIGURES])
        stdout.print(nt)
    for k in metrics["skipped"]:
        console.print(f"[yellow]skipped[/] {k['source']}: {k['reason']}", highlight=False)
    stdout.print(f"report: {out / 'report.html'}", highlight=False)


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


def main() -> None:
    app()
