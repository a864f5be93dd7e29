"""The music commands: train and use the codec, semantic model and LMs, continue and
generate music, describe artifacts, the demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aimusic.cli.common import (
    CacheOpt,
    ConfigOpt,
    GenCodecOpt,
    GenLayoutOpt,
    GenSeedOpt,
    GenSemanticOpt,
    LayoutOpt,
    ModelsOpt,
    PresetOpt,
    StageOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    app,
    codec_path,
    handle_errors,
    load_chain_for,
    models_dir,
    models_in,
    print_generated,
    print_kv,
    print_lm_result,
    print_skipped,
    say,
    semantic_path,
    strict_exit,
    train_configs,
)
from aimusic.errors import AimusicError
from aimusic.fileio import check_writable
from aimusic.runtime import console, settings, stdout


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
        print_kv(d)


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
        out = check_writable(out or models_dir(models) / "codec.safetensors")
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size,
                 "decoder_only": decoder_only or None}
        model_cfg, train_cfg = train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
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
    onsets: Annotated[
        bool, typer.Option("--onsets", help="Tokens also say when a note starts: twice the "
                                            "clusters, struck or not (the beat for the LMs).")
    ] = False,
) -> None:
    """Train the self-supervised semantic tokenizer (25 tokens/s) on a folder of audio."""
    from dataclasses import replace

    from aimusic.runtime import resolve_device
    from aimusic.semantic.model import PRESETS, load_semantic
    from aimusic.semantic.train import TRAIN_PRESETS, train_semantic

    with handle_errors():
        out = check_writable(out or models_dir(models) / "semantic.safetensors")
        model_cfg, train_cfg = train_configs(PRESETS, TRAIN_PRESETS, preset, config,
                                              {"steps": steps, "minutes": minutes})
        if clusters is not None:
            model_cfg = replace(model_cfg, clusters=clusters)
        if onsets:
            model_cfg = replace(model_cfg, onsets=True)
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

    _codec_each(inputs, out, codec_path(codec, models),
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

    _codec_each(inputs, out, codec_path(codec, models),
                lambda p: p.with_name(p.name.removesuffix(".safetensors").removesuffix(".codes")
                                      + ".wav"),
                decode_file)


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
        codec_model = load_codec(codec_path(codec, models), device)
        semantic_model = load_semantic(semantic_path(semantic, models), device)
        r = tokenize(audio_dir, out, codec_model, semantic_model, workers=workers,
                     num_parts=parts, part_index=index, files_per_shard=files_per_shard,
                     min_seconds=min_seconds, device=str(device), progress=True)
    print_skipped(r.errors_path)
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
    strict_exit(strict, r.skipped, r.errors_path)


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
    strict_exit(strict, int(m["errors"]), tokens_dir / ERRORS)


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
    init: Annotated[
        Optional[Path], typer.Option(help="Start each stage from this models directory's LM "
                                          "(weights only: a fresh optimizer and schedule), "
                                          "where there is no state to resume.")
    ] = None,
) -> None:
    """Train the token language models (semantic, coarse, fine) on a token directory."""
    from aimusic.lm.model import PRESETS
    from aimusic.lm.train import TRAIN_PRESETS, stages_for, train_lm
    from aimusic.runtime import resolve_device

    with handle_errors():
        out_dir = check_writable(out or models_dir(models), folder=True)
        stages = stages_for(stage, layout)
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size}
        model_cfg, train_cfg = train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
        results = train_lm(tokens_dir, out_dir, stages, model_cfg, train_cfg, resolve_device(),
                           resume=resume, init=init)
    for s, r in results.items():
        if r:  # empty on processes other than the main one
            print_lm_result(s, r)


@app.command("continue")
def continue_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Prompt audio files (wav, flac, ogg, mp3).")],
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Seconds to add to each file.")],
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output file (one input only; default "
                                                         "IN.continued.wav beside each input; "
                                                         "- for a WAV on standard output). A "
                                                         "WAV plays while it is written.")
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
        bool, typer.Option("--fine/--no-fine", help="Run the fine stage where the models have a "
                                                    "fine LM; --no-fine decodes the coarse levels "
                                                    "alone (faster, at the codec's lower "
                                                    "bandwidth).")
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
    extend each file by --seconds, in chunks of 20 s written as they are made (any length,
    in the memory of one chunk)."""
    from aimusic.gen import continue_file
    from aimusic.voice.prompt import PromptVoice

    with handle_errors():
        if out is not None and len(inputs) > 1:
            raise AimusicError("-o names one output; with several inputs, outputs go beside each")
        targets = [Path("-") if str(out) == "-" else
                   check_writable(out or path.with_name(path.stem + ".continued.wav"))
                   for path in inputs]
        chain = load_chain_for(models, layout, codec, semantic)
        sampling = chain.sampling(temperature, top_k, top_p)
        for path, target in zip(inputs, targets):
            r = continue_file(chain, path, target, seconds, prompt_seconds=prompt_seconds,
                              continuation_only=continuation_only, sampling=sampling,
                              seed=seed if seed is not None else settings.seed, use_cache=cache,
                              progress=not settings.quiet, fine=fine,
                              voice=PromptVoice.of(chain, voice_match, eq),
                              report=None if settings.quiet else say)
            print_generated(r, f"{path} -> ")


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
    from aimusic.gen import generate_audio

    with handle_errors():
        check_writable(out, folder=True)
        chain = load_chain_for(models, layout, codec, semantic)
        sampling = chain.sampling(temperature, top_k, top_p)
        base = seed if seed is not None else settings.seed
        if base is None:
            import random

            base = random.SystemRandom().randrange(2**31 - n)
        for i in range(n):
            r = generate_audio(chain, seconds, sampling=sampling, seed=base + i, use_cache=cache,
                               progress=not settings.quiet, label=f"{i + 1}/{n} " if n > 1 else "")
            r["out"] = save_audio(out / f"sample-{i:03d}.wav", r["audio"], r["sample_rate"])
            print_generated(r, "")


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
    piano_models: Annotated[
        Optional[Path], typer.Option("--piano-models", help="Models for the solo piano piece "
                                                            "(default: the bundled piano models).")
    ] = None,
    piano: Annotated[
        bool, typer.Option("--piano/--no-piano", help="Continue the bundled piano piece too.")
    ] = True,
) -> None:
    """Continue a recorded piece and a solo piano piece, and speak a sentence, with the
    bundled models; writes OUT/report.html."""
    from aimusic.demo import run_demo
    from aimusic.runtime import bundled_models_dir

    voice_dir = voice_models or bundled_models_dir("voice")
    piano_dir = (piano_models or bundled_models_dir("piano")) if piano else None
    with handle_errors():
        check_writable(out, folder=True)
        m = run_demo(out, models_in(models), prompt, prompt_seconds, seconds, seed,
                     progress=not settings.quiet, voice_models=voice_dir,
                     piano_models=piano_dir)
    for part in (m, m["piano"]):
        if part is None:
            continue
        stdout.print(part["timings_line"], highlight=False, soft_wrap=True)
        for f in part["files"].values():
            stdout.print(f"{out / f['audio']}  {f['what']}", highlight=False, soft_wrap=True)
    v = m["voice"]
    if v is not None:
        stdout.print(v["timings_line"], highlight=False, soft_wrap=True)
        for f in v["files"].values():
            stdout.print(f"{out / f['audio']}  {f['what']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"note: {m['voice_note']}", highlight=False, soft_wrap=True)
    stdout.print(f"report: {out / 'report.html'}  ({m['elapsed_s']:.1f} s)", highlight=False)
