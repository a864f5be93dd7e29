"""The ``aimusic`` command line's shared parts: the Typer apps, the global options, error
handling (an :class:`AimusicError` prints one line and exits with status 1; ``-v`` adds the
traceback), the options several commands share and the helpers that resolve models."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

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


def print_kv(d: dict[str, Any], indent: str = "") -> None:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            stdout.print(f"{indent}[bold]{k}[/]:", highlight=False)
            print_kv(v, indent + "  ")
        else:
            stdout.print(f"{indent}[bold]{k}[/]: {v}", highlight=False)


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


def models_dir(models: Path | None) -> Path:
    from aimusic.runtime import default_models_dir

    return models if models is not None else Path(default_models_dir())


def models_in(models: Path | None, bundle: str = "music") -> Path:
    """Models to read (not to write): like models_dir, with the bundled models (music, or
    voice for `speak`) when there is no ./models at all."""
    from aimusic.runtime import models_to_read

    return models_to_read(models, bundle)


def codec_path(codec: Path | None, models: Path | None) -> Path:
    return codec if codec is not None else models_in(models) / "codec.safetensors"


def train_configs(presets: dict, train_presets: dict, preset: str, config: Path | None,
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


def semantic_path(semantic: Path | None, models: Path | None) -> Path:
    return semantic if semantic is not None else models_in(models) / "semantic.safetensors"


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
    bool, typer.Option("--cache/--no-cache", hidden=True,  # for comparisons, not for users
                       help="KV-cached decoding; --no-cache recomputes every step (same tokens, "
                            "for comparison; slow).")
]


GenCodecOpt = Annotated[
    Optional[Path], typer.Option("--codec", help="Codec model (default: MODELS/codec.safetensors).")
]


GenSemanticOpt = Annotated[
    Optional[Path],
    typer.Option("--semantic", help="Semantic model (default: MODELS/semantic.safetensors)."),
]


def load_chain_for(models: Path | None, layout: str | None, codec: Path | None,
                semantic: Path | None, bundle: str = "music") -> Any:
    from aimusic.gen import load_chain
    from aimusic.runtime import resolve_device

    return load_chain(models_in(models, bundle), layout, resolve_device(), codec, semantic)


def say(line: str) -> None:
    """A progress line on stderr, a terminal or not (rich's bars show only on a terminal)."""
    console.print(line, highlight=False, soft_wrap=True)


def print_generated(r: dict[str, Any], src: str) -> None:
    from aimusic.gen import format_timings

    seconds = r["output_seconds"] if "output_seconds" in r else r["audio"].size / r["sample_rate"]
    to = console if str(r["out"]) == "-" else stdout  # the audio itself is on stdout
    to.print(f"{src}{r['out']}  ({seconds:.2f} s, seed {r['seed']})", highlight=False,
             soft_wrap=True)
    if settings.verbose:
        console.print(format_timings(r), highlight=False, soft_wrap=True)


def print_lm_result(stage: str, r: dict[str, Any]) -> None:
    speed = f"  {r['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in r else ""
    stdout.print(f"lm-{stage}: {r.get('out') or r.get('model')}  val {r['val_ce']:.4f} nats/token "
                 f"(unigram {r['unigram_ce']:.4f}, bigram {r['bigram_ce']:.4f}; "
                 f"{r['val_tokens']:,} tokens){speed}", highlight=False, soft_wrap=True)


def print_skipped(errors_path: Path, limit: int = 5) -> None:
    """The first skipped files and why, on stderr; the errors file has them all."""
    lines = errors_path.read_text().splitlines() if errors_path.exists() else []
    for line in lines[:limit]:
        e = json.loads(line)
        console.print(f"[yellow]skipped[/] {e['source']}: {e['reason']}",
                      highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"[yellow]skipped[/] ... {len(lines) - limit} more in {errors_path}",
                      highlight=False, soft_wrap=True)


def strict_exit(strict: bool, skipped: int, errors_path: Path) -> None:
    """With ``--strict``, exit with status 1 when any file was skipped."""
    if strict and skipped:
        console.print(f"[bold red]error:[/] {skipped} file(s) skipped (--strict); see {errors_path}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def main() -> None:
    import aimusic.cli  # noqa: F401  (registers every command)

    app()
