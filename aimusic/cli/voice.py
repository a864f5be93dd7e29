"""The voice commands: train the reading LM and speak text in a voice heard for seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from aimusic.cli.common import (
    ConfigOpt,
    GenSeedOpt,
    ModelsOpt,
    PresetOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    app,
    handle_errors,
    load_chain_for,
    models_dir,
    models_in,
    print_generated,
    train_configs,
)
from aimusic.errors import AimusicError
from aimusic.fileio import check_writable
from aimusic.runtime import console, settings, stdout


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
        target = check_writable(out or models_dir(models) / READING_FILE)
        flags = {"steps": steps, "minutes": minutes, "batch_size": batch_size}
        model_cfg, train_cfg = train_configs(PRESETS, TRAIN_PRESETS, preset, config, flags)
        if voice_tokens < 0:
            raise AimusicError(f"--voice-tokens {voice_tokens}: give 0 or more")
        r = train_reading(tokens_dir, corpus, target, model_cfg, train_cfg, resolve_device(),
                          resume=resume, show_progress=not settings.quiet,
                          voice_tokens=voice_tokens)
    stdout.print(f"lm-reading: {r['out']}  val {r['val_ce']:.4f} nats/token (unigram "
                 f"{r['unigram_ce']:.4f}, bigram {r['bigram_ce']:.4f}; {r['train_sentences']} "
                 f"sentences trained on, {r['val_sentences']} validated)", highlight=False,
                 soft_wrap=True)


def _lines_to_say(text: str | None, text_file: Path | None,
                  out: Path | None) -> tuple[list[str], list[Path]]:
    """The text to say (one line, or each non-empty line of --text-file) and the file each
    goes to (-o, or speech.wav; with --text-file, -o's folder, or speech/, line-001.wav...)."""
    if (text is None) == (text_file is None):
        raise AimusicError("give the text to say, or --text-file (not both)")
    if text_file is None:
        return [str(text)], [out or Path("speech.wav")]
    try:
        lines = [ln.strip() for ln in text_file.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise AimusicError(f"{text_file}: cannot read ({e.strerror})") from None
    if not lines:
        raise AimusicError(f"{text_file}: no text in it")
    folder = out or Path("speech")
    return lines, [folder / f"line-{i + 1:03d}.wav" for i in range(len(lines))]


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
    from aimusic.lm.model import load_lm
    from aimusic.text.phonemes import foreign_letters
    from aimusic.voice.tts import EXAMPLE_VOICE, READING_FILE, SPEAK_FINE, VOICE_MATCH, speak_text

    with handle_errors():
        lines, targets = _lines_to_say(text, text_file, out)
        for target in targets:
            check_writable(target)
        chain = load_chain_for(models, "flat", None, None, bundle="voice")
        lm = load_lm(models_in(models, "voice") / READING_FILE, "reading", chain.device)
        if voice is None:
            voice = EXAMPLE_VOICE
            console.print(f"no --voice: speaking in the bundled example voice ({voice.name}, "
                          "flite's rms, a voice the bundled models never trained on)",
                          highlight=False, soft_wrap=True)
        audio = load_audio(voice, chain.sample_rate)
        sampling = chain.sampling(temperature, top_k, top_p)
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
            print_generated(r, "")
