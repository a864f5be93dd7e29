#!/usr/bin/env python
"""Build the speech corpus: synthetic English voices and real recorded prompts, 16 kHz.

    python examples/make_speech_corpus.py --size small      # 3 utterances a voice, ~5 s
    python examples/make_speech_corpus.py                   # ~8,400, 7 h, ~4 min

Voices (only Debian packages: `make speech-corpus` installs them, see SPEECH_APT there):
    flite      kal16, awb, rms, slt                     (package flite)
    festival   kal_diphone, ked_diphone,                (festival + festvox-kallpc16k,
               cmu_us_slt_arctic_hts                     festvox-kdlpc16k, festvox-us-slt-hts)
    espeak     24 speakers: 8 English accents (en-us, en-gb, en-gb-scotland, en-gb-x-rp,
               en-gb-x-gbclan, en-gb-x-gbcwmd, en-029, en-us-nyc) x 3 voice variants
               (+m1..+m7, +f1..+f5), each with its own rate and pitch      (espeak-ng)
    asterisk   real recordings of telephone prompts, 8 kHz: en_US_f_Allison with its
               transcripts (asterisk-core-sounds-en-wav, -en), and es_MX_f_Allison,
               fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU (-es-wav, -fr-wav, ...;
               their transcripts from -es, -fr, ... when installed; no phonemes);
               upsampled to 16 kHz they carry nothing above 4 kHz
Flite `rms` and festival `ked_diphone` are test voices: all their utterances are in the
"test" split and never in train or val. Everyone else's utterances go to train or val by
their text (10 % of the texts are val texts, for every speaker alike), so no val
sentence is ever read in train (a recording goes by its transcript, or its name when it
has none). Synthetic voices read sentences from the fortunes-min package (when
installed) and a list in this script, picked per voice by the seed.

Layout under --out (16 kHz mono PCM_16 wav; silence trimmed; level set to -20 dBFS RMS,
peaks at most -1 dBFS):
    wav/{train,val,test}/<speaker>/<utt>.wav
    manifest.jsonl   one utterance a line: path, speaker, source, voice, lang, text,
                     phonemes (aimusic.text symbols joined by spaces: espeak-ng's en-us
                     reading of the text, whatever the voice's accent; null unless en),
                     duration, split, sample_rate, utt, key (+ origin for recordings)
    manifest.json    format "aimusic.speech-corpus/1": seed, size, counts per speaker and
                     split, hours, speakers, skipped utterances and missing voices

Everything is a function of --seed and the voices installed, never of --workers. A rerun
keeps files the manifest lists with the same parameters and does not retry utterances
dropped for their content (silent, too short, no speech). Voices a run does not build
(--sources, --speakers, or a package removed since) keep their earlier files (same seed). A voice whose
package is missing is skipped and reported; the run fails only when no voice is there.

Cost, measured on this project's 2-core machine while another training job ran
(--workers 2): --size small builds 108 utterances of 36 speakers in ~4-6 s; --size
default builds 8,424 utterances of 36 speakers (7.1 h of audio: 5.7 h train, 0.67 h val,
0.75 h test; 0.8 GB) in 3.5-5 minutes, and a rerun takes ~2 s.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import fnmatch
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aimusic.audio import load_audio, save_audio
from aimusic.errors import AimusicError
from aimusic.fileio import atomic_path, write_json
from aimusic.text import phonemes as ph

FORMAT = "aimusic.speech-corpus/1"
SR = 16000
VERSION = 2  # bump when synthesis or post-processing changes, to invalidate kept files
SPLITS = ("train", "val", "test")
SOURCES = ("flite", "festival", "espeak", "asterisk")
VAL_FRACTION = 0.1
MIN_SECONDS, MAX_SECONDS = 0.15, 90.0  # a short word; the longest recorded prompt
SILENT_DB = -50.0  # a peak below this is no speech
TRIM_DB = -40.0  # 10 ms frames this far below the loudest one are silence at the ends
TARGET_RMS_DB, PEAK_DB = -20.0, -1.0
CHUNK = 25  # utterances per worker task
UTT_TIMEOUT_S = 60

ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
ASTERISK_TEXT = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices")
FORTUNE_FILES = ("/usr/share/games/fortunes/fortunes", "/usr/share/games/fortunes/literature",
                 "/usr/share/games/fortunes/riddles")


@dataclass(frozen=True)
class Voice:
    speaker: str  # the speaker id in the manifest: "flite-kal16", "espeak-en-gb+f2"
    source: str  # flite, festival, espeak, asterisk
    name: str  # the engine's voice: "kal16", "kal_diphone", "en-gb+f2", "en_US_f_Allison"
    package: str  # the Debian package that brings it
    lang: str = "en"
    test: bool = False
    rate: int | None = None  # espeak: words a minute
    pitch: int | None = None  # espeak: 0-99
    talent: str | None = None  # the person behind a voice several engines share

    @property
    def spec(self) -> str:
        """What the audio depends on, beside the text."""
        extra = f"|s{self.rate}|p{self.pitch}" if self.rate else ""
        return f"{self.source}:{self.name}{extra}"


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")


def espeak_voices() -> list[Voice]:
    """Accent i gets variants 3i..3i+2 (cyclically): every variant in two accents. Rate and
    pitch come from the speaker's name, not the seed: a speaker sounds the same in every
    corpus."""
    out = []
    for i, accent in enumerate(ESPEAK_ACCENTS):
        for k in range(3):
            name = f"{accent}+{ESPEAK_VARIANTS[(3 * i + k) % len(ESPEAK_VARIANTS)]}"
            h = stable_hash("espeak-voice", name)
            out.append(Voice(f"espeak-{name}", "espeak", name, "espeak-ng",
                             rate=145 + h % 41, pitch=35 + (h >> 8) % 31))
    return out


VOICES: tuple[Voice, ...] = (
    Voice("flite-kal16", "flite", "kal16", "flite", talent="kal"),
    Voice("flite-awb", "flite", "awb", "flite"),
    Voice("flite-rms", "flite", "rms", "flite", test=True),
    Voice("flite-slt", "flite", "slt", "flite", talent="slt"),
    Voice("festival-kal_diphone", "festival", "kal_diphone", "festvox-kallpc16k", talent="kal"),
    Voice("festival-ked_diphone", "festival", "ked_diphone", "festvox-kdlpc16k", test=True),
    Voice("festival-cmu_us_slt_arctic_hts", "festival", "cmu_us_slt_arctic_hts",
          "festvox-us-slt-hts", talent="slt"),
    *espeak_voices(),
    Voice("asterisk-en_US_f_Allison", "asterisk", "en_US_f_Allison",
          "asterisk-core-sounds-en-wav", talent="allison"),
    Voice("asterisk-es_MX_f_Allison", "asterisk", "es_MX_f_Allison",
          "asterisk-core-sounds-es-wav", lang="es", talent="allison"),
    Voice("asterisk-fr_CA_f_June", "asterisk", "fr_CA_f_June", "asterisk-core-sounds-fr-wav",
          lang="fr"),
    Voice("asterisk-it_IT_m_Carlo", "asterisk", "it_IT_m_Carlo", "asterisk-core-sounds-it-wav",
          lang="it"),
    Voice("asterisk-ru_RU_f_IvrvoiceRU", "asterisk", "ru_RU_f_IvrvoiceRU",
          "asterisk-core-sounds-ru-wav", lang="ru"),
)
TEST_SPEAKERS = tuple(v.speaker for v in VOICES if v.test)


@dataclass(frozen=True)
class Size:
    per_voice: int  # utterances of each flite and festival voice
    per_espeak: int  # of each espeak speaker
    per_asterisk: int | None  # of each recorded speaker (None: every prompt)


SIZES = {"small": Size(3, 3, 3), "default": Size(400, 120, None)}


class CorpusError(AimusicError):
    """Nothing to build from: no voice installed, or espeak-ng missing."""


# ---------------------------------------------------------------- sentences

# Written for this corpus: short and long, statements, questions and exclamations, plain
# words that every engine reads alike (no digits, abbreviations or acronyms).
SENTENCES = """
The kettle began to whistle just as the phone rang.
Please close the window before the rain comes in.
Where did you leave the keys to the garden shed?
A thin layer of frost covered every car on the street.
She folded the letter twice and slipped it into her coat.
Nobody expected the little boat to reach the island.
How long does it take to walk to the station from here?
The museum opens late on Thursdays during the summer.
Bright yellow leaves drifted slowly across the quiet pond.
He tuned the old guitar until every string rang true.
Could you read the last paragraph aloud once more?
The children built a fort out of blankets and chairs.
We watched the storm roll in over the distant hills.
That bakery sells the best bread in the whole town.
I think the meeting has been moved to next Tuesday.
A flock of geese flew low over the frozen marsh.
The judge asked the witness to speak a little louder.
Fresh paint makes even a small room feel brand new.
Why would anyone climb a mountain in the middle of winter?
The library was silent except for the ticking clock.
His grandmother taught him how to bake apple pie.
Turn left at the church and keep going until the bridge.
Thick fog rolled off the sea and swallowed the harbour.
The train was delayed because of ice on the tracks.
Every morning the baker wakes up long before sunrise.
She measured the flour carefully and added a pinch of salt.
Is there anything else you would like to add?
The puppy chased its own tail until it fell over.
A gentle breeze carried the smell of cut grass.
They painted the fence white and the door bright blue.
The astronaut described the earth as a fragile blue marble.
Hold the ladder steady while I change the light bulb.
What a wonderful surprise to see you here!
The river had burst its banks after three days of rain.
Our neighbour grows tomatoes, beans and tall sunflowers.
The pilot announced that we would land in twenty minutes.
Knowledge grows when it is shared with others.
Please remember to water the plants while I am away.
The orchestra tuned their instruments before the concert.
A single candle lit the narrow hallway.
He apologised for being late and took his seat quietly.
The mechanic found a small crack in the engine block.
Do you prefer tea or coffee in the morning?
The fox slipped under the hedge and disappeared.
Winter evenings are perfect for long books and warm soup.
The teacher wrote the date neatly on the blackboard.
Several boats were anchored in the calm blue bay.
I have never seen so many stars in one sky.
The map showed a path that no longer existed.
Careful, the plates are still hot from the oven!
She speaks three languages and is learning a fourth.
The wind howled through the chimney all night long.
We should leave early to avoid the heavy traffic.
The scientist checked her results a second time.
A tiny spider had spun its web across the doorway.
The market square was crowded with stalls and shoppers.
Would you mind holding my bag for a moment?
The lighthouse keeper climbed the stairs every evening.
My brother fixed the bicycle with a borrowed wrench.
The soup needs a little more pepper, I think.
Heavy snow closed the mountain pass for a week.
The old clock in the hall chimed twelve times.
Everyone laughed when the cat jumped onto the piano.
They argued about the rules and then played anyway.
The nurse smiled and said the worst was over.
A loud crash came from the kitchen downstairs.
How many people are coming to dinner tonight?
The village celebrates the harvest with music and dancing.
He wrapped the gift in brown paper and tied it with string.
Sunlight poured through the tall windows of the hall.
The bus driver waited patiently for the last passenger.
Those shoes look comfortable but they hurt my feet.
The garden was full of bees and butterflies.
Please sign your name at the bottom of the page.
The waves crashed against the rocks below the cliff.
She found an old photograph hidden inside the book.
Nothing tastes better than cold water on a hot day.
The engineer explained how the bridge carries its weight.
Let us take the long way home along the river.
The farmer counted his sheep as they came through the gate.
A sudden gust of wind blew the hat off his head.
The students whispered while the teacher was out.
Which of these two roads leads to the coast?
The jam jar was empty except for a sticky spoon.
Our flight was cancelled, so we took the night train.
The painter mixed blue and yellow to make green.
He whistled a cheerful tune as he swept the yard.
The doctor asked him to breathe in slowly.
The castle walls were covered in dark green ivy.
I wonder whether the shop is still open.
Thunder rumbled somewhere far beyond the valley.
The cook chopped the onions with a very sharp knife.
Remember to lock the back door when you go out.
The festival drew visitors from all over the country.
A small boy waved at the passing ships.
The pages of the diary were yellow with age.
We planted an oak tree on the day she was born.
The choir sang softly in the old stone chapel.
Quick, catch the ball before it rolls into the road!
The reporter asked the mayor a difficult question.
Her voice was calm, though her hands were shaking.
The machine hummed quietly in the corner of the lab.
Apples, pears and plums fell from the trees in autumn.
The hikers rested beside a clear mountain stream.
Why is the sky blue and the sunset red?
The actor forgot his lines in the second act.
A warm fire crackled in the living room.
The bookshop on the corner sells maps and postcards.
Just follow the signs and you cannot miss it.
The swimmer dived into the cold lake without a word.
Somebody left a bunch of flowers on the doorstep.
The radio played an old song that we both knew.
Each player must roll the dice before moving.
The sailors raised the sails as the tide turned.
She laughed so hard that tears ran down her face.
My uncle keeps bees at the bottom of his garden.
The carpenter measured twice and cut once.
Rain drummed steadily on the tin roof.
The queen waved to the crowd from the balcony.
There is a strange noise coming from the attic.
The cyclist pedalled hard up the steep hill.
We shared a pot of tea and talked for hours.
The zoo keeper fed the penguins a bucket of fish.
Gold and silver coins were found in the field.
Please turn the music down, the baby is sleeping.
An owl hooted in the woods behind the house.
The chef tasted the sauce and nodded with approval.
Is it true that you have never seen the sea?
The mountain path was narrow, steep and rocky.
Her garden won first prize at the county show.
The shopkeeper counted the change into my hand.
A line of ants marched across the kitchen floor.
The boy dreamed of flying over the rooftops.
The doors of the theatre opened at seven sharp.
Few things are as peaceful as a snowy morning.
The fisherman mended his nets on the quay.
They ran all the way to the top of the hill.
The velvet curtains kept out the afternoon heat.
Could you pass me the salt and the vinegar?
The ship vanished slowly over the horizon.
Jazz music drifted out of the open window.
The twins look alike but they think very differently.
A rusty gate creaked in the wind.
The professor paused and looked over his glasses.
We built a snowman with a carrot for a nose.
The thief escaped through the back window.
Good ideas often arrive when you least expect them.
"""


def builtin_sentences() -> list[str]:
    return [s.strip() for s in SENTENCES.strip().splitlines() if s.strip()]


_SENTENCE_OK = re.compile(r"[A-Z][A-Za-z ,;:'-]*[a-z][.!?]")


def clean_sentences(text: str, min_words: int = 4, max_words: int = 24) -> list[str]:
    """Plain sentences from prose: split at . ! ? before a capital; keep those of
    min_words..max_words words of letters and , ; : ' - only (no digits, no abbreviations,
    no acronyms), which every engine reads alike. "Q:"/"A:" prefixes are dropped."""
    t = text.replace('"', "").replace(" -- ", ", ").replace("--", ", ")
    t = " ".join(t.split())
    out = []
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", t):
        s = re.sub(r"^[QA]:\s+", "", s)
        if (min_words <= len(s.split()) <= max_words and _SENTENCE_OK.fullmatch(s)
                and not re.search(r"[A-Z]{2}|\s[,;:]|[,;:]\S", s)):
            out.append(s)
    return out


def fortune_sentences(files: Iterable[str] = FORTUNE_FILES) -> list[str]:
    """Sentences of the fortune cookies (fortunes-min), attributions left out."""
    out = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            continue
        for entry in re.split(r"^%\s*$", p.read_text(errors="replace"), flags=re.M):
            lines = []
            for ln in entry.splitlines():
                if re.match(r"\s*--", ln):  # "-- Mark Twain": the rest is attribution
                    break
                lines.append(ln.strip())
            out += clean_sentences(" ".join(lines))
    return out


def sentence_pool() -> list[str]:
    """Every sentence a synthetic voice may read, unique, sorted."""
    return sorted(set(builtin_sentences()) | set(fortune_sentences()))


def text_id(text: str) -> str:
    return "s" + hashlib.sha256(text.encode()).hexdigest()[:10]


def text_split(text: str, seed: int) -> str:
    """train or val, by a hash of the text: every speaker reads a val text in val."""
    return "val" if stable_hash(seed, "split", text) / 2.0**64 < VAL_FRACTION else "train"


def pick_texts(voice: Voice, pool: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    """(text, split) a voice reads: test voices n texts in split test; others round(n/10)
    val texts and the rest train texts (no val below 3), each in a seeded order per
    speaker, so a larger n keeps a smaller n's picks."""
    def order(texts: Iterable[str]) -> list[str]:
        return sorted(texts, key=lambda t: (stable_hash(seed, "pick", voice.speaker, t), t))

    if voice.test:
        return [(t, "test") for t in order(pool)[:n]]
    n_val = 0 if n < 3 else max(1, round(n * VAL_FRACTION))
    val = order(t for t in pool if text_split(t, seed) == "val")[:n_val]
    train = order(t for t in pool if text_split(t, seed) == "train")[: n - len(val)]
    return [(t, "train") for t in train] + [(t, "val") for t in val]


# ---------------------------------------------------------------- voices on this machine


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _flite_voices() -> set[str]:
    r = _run(["flite", "-lv"], timeout=30)
    return set(r.stdout.split(":", 1)[-1].split())


def _espeak_names() -> tuple[set[str], set[str]]:
    langs = {ln.split()[1] for ln in _run(["espeak-ng", "--voices"], timeout=30).stdout
             .splitlines()[1:] if len(ln.split()) > 1}
    variants = {ln.split()[-1].rsplit("/", 1)[-1] for ln in
                _run(["espeak-ng", "--voices=variant"], timeout=30).stdout.splitlines()[1:]
                if ln.split()}
    return langs, variants


def festival_voice_dir(name: str) -> Path | None:
    for root in FESTIVAL_VOICE_DIRS:
        for d in sorted(Path(root).glob(f"*/{name}")):
            if d.is_dir():
                return d
    return None


def find_voices(voices: Iterable[Voice]) -> tuple[list[Voice], list[dict]]:
    """The voices installed here, and for each one that is not: speaker, reason, install."""
    voices = list(voices)
    found, missing = [], []
    cache: dict[str, Any] = {}

    def miss(v: Voice, reason: str, pkgs: str) -> None:
        missing.append({"speaker": v.speaker, "source": v.source, "reason": reason,
                        "install": f"sudo apt-get install {pkgs}"})

    for v in voices:
        if v.source == "flite":
            if shutil.which("flite") is None:
                miss(v, "flite not installed", "flite")
                continue
            if "flite" not in cache:
                cache["flite"] = _flite_voices()
            if v.name not in cache["flite"]:
                miss(v, f"flite has no voice {v.name} (flite -lv)", v.package)
                continue
        elif v.source == "festival":
            if shutil.which("festival") is None:
                miss(v, "festival not installed", f"festival {v.package}")
                continue
            if festival_voice_dir(v.name) is None:
                miss(v, f"festival voice {v.name} not installed", v.package)
                continue
        elif v.source == "espeak":
            if shutil.which("espeak-ng") is None:
                miss(v, "espeak-ng not installed", "espeak-ng")
                continue
            if "espeak" not in cache:
                cache["espeak"] = _espeak_names()
            langs, variants = cache["espeak"]
            accent, _, variant = v.name.partition("+")
            if accent not in langs or (variant and variant not in variants):
                miss(v, f"espeak-ng has no voice {v.name}", "espeak-ng-data")
                continue
        elif v.source == "asterisk":
            d = ASTERISK_ROOT / v.name
            if not (d.is_dir() and any(d.rglob("*.wav"))):
                miss(v, f"no recordings in {d}", v.package)
                continue
        else:
            miss(v, f"unknown source {v.source}", v.package)
            continue
        found.append(v)
    return found, missing


def asterisk_transcripts(lang: str) -> dict[str, str]:
    """Prompt name ("digits/5") -> transcript, from asterisk-core-sounds-<lang>; {} if absent."""
    p = Path(ASTERISK_TEXT.format(lang=lang))
    if not p.is_file():
        return {}
    out = {}
    with gzip.open(p, "rt", encoding="utf-8", errors="replace") as f:
        for ln in f:
            if ln.startswith(";") or ":" not in ln:
                continue
            name, text = ln.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def speech_text(transcript: str | None) -> str | None:
    """The spoken words of a transcript: notes in [] or <> ("[ascending tones]", "[@]",
    "<beep ascending>") and a transcript all in () ("(beep)") removed; None when nothing
    is left."""
    if transcript is None or re.fullmatch(r"\s*\([^)]*\)\s*", transcript):
        return None
    t = " ".join(re.sub(r"\[[^\]]*\]|<[^>]*>", " ", transcript).split())
    return t if re.search(r"\w", t) else None


def asterisk_notes() -> dict[str, str]:
    """Prompts that are no speech (tones, beeps) by their English transcript, with it: the
    same prompt names are tones in every language, whatever its own transcript says."""
    return {name: t for name, t in asterisk_transcripts("en").items()
            if t and speech_text(t) is None}


# ---------------------------------------------------------------- synthesis and clean-up


LEAD_S, TAIL_S = 0.1, 0.15  # silence every utterance starts and ends with


def active_bounds(x: np.ndarray, thresh_db: float = TRIM_DB) -> tuple[int, int]:
    """Start and end (samples) of the 10 ms frames above thresh_db re the loudest one."""
    hop = SR // 100
    n = len(x) // hop
    if n == 0:
        return 0, 0
    env = np.abs(x[: n * hop]).reshape(n, hop).max(axis=1)
    if env.max() <= 0:
        return 0, 0
    on = np.nonzero(env > env.max() * 10 ** (thresh_db / 20))[0]
    return int(on[0]) * hop, (int(on[-1]) + 1) * hop


def finish(x: np.ndarray) -> np.ndarray:
    """Trim silence at the ends to 100 ms before and 150 ms after the sound (padding with
    zeros where an engine leaves less) and set the level: -20 dBFS RMS over the louder
    frames, peaks at most -1 dBFS. ValueError("dropped: ...") when the audio is empty,
    silent, too short or too long."""
    if x.size == 0:
        raise ValueError("dropped: no audio")
    peak = float(np.abs(x).max())
    if peak < 10 ** (SILENT_DB / 20):
        raise ValueError(f"dropped: silent (peak below {SILENT_DB:.0f} dBFS)")
    start, end = active_bounds(x)
    if end - start < MIN_SECONDS * SR:
        raise ValueError(f"dropped: shorter than {MIN_SECONDS} s after trimming silence")
    if end - start > MAX_SECONDS * SR:
        raise ValueError(f"dropped: longer than {MAX_SECONDS:.0f} s")
    lead, tail = int(LEAD_S * SR), int(TAIL_S * SR)
    a, z = max(0, start - lead), min(len(x), end + tail)
    y = x[a:z].astype(np.float64)
    hop = SR // 100
    frames = y[: len(y) // hop * hop].reshape(-1, hop)
    energy = np.mean(frames**2, axis=1)
    loud = energy > energy.max() * 10 ** (TRIM_DB / 10)  # RMS over the speech, not pauses
    rms = float(np.sqrt(np.mean(energy[loud])))
    gain = min(10 ** (TARGET_RMS_DB / 20) / rms, 10 ** (PEAK_DB / 20) / np.abs(y).max())
    y = np.pad(y * gain, (lead - (start - a), tail - (z - end)))
    return y.astype(np.float32)


def _first_line(s: str) -> str:
    return (s.strip().splitlines() or [""])[-1][:200]


def synth_flite(v: Voice, text: str, wav: Path) -> None:
    r = _run(["flite", "-voice", v.name, "-t", text, "-o", str(wav)], timeout=UTT_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"flite failed: {_first_line(r.stderr)}")


def synth_espeak(v: Voice, text: str, wav: Path) -> None:
    r = subprocess.run(["espeak-ng", "-v", v.name, "-s", str(v.rate), "-p", str(v.pitch),
                        "-b", "1", "-w", str(wav), "--stdin"], input=text, capture_output=True,
                       encoding="utf-8", timeout=UTT_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {_first_line(r.stderr)}")


def synth_festival_batch(v: Voice, items: list[tuple[str, Path]]) -> str:
    """Every (text, wav) through one festival process; returns its stderr's last line."""
    def scheme(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"(voice_{v.name})"]
    lines += [f"(utt.save.wave (utt.synth (Utterance Text {scheme(t)})) {scheme(str(w))} 'riff)"
              for t, w in items]
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        r = _run(["festival", "--batch", f.name], timeout=UTT_TIMEOUT_S * (1 + len(items)))
    finally:
        Path(f.name).unlink(missing_ok=True)
    return _first_line(r.stderr) or f"exit status {r.returncode}"


def describe(e: Exception) -> str:
    msg = (str(e).splitlines() or [""])[0]
    return msg[:300] if msg.startswith("dropped:") else f"{type(e).__name__}: {msg}"[:300]


def make_entry(task: dict, item: dict, audio: np.ndarray) -> dict:
    v: Voice = task["voice"]
    save_audio(Path(task["out"]) / item["path"], audio, SR, subtype="PCM_16")
    e = {"path": item["path"], "speaker": v.speaker, "source": v.source, "voice": v.name,
         "lang": v.lang, "text": item["text"], "phonemes": None,
         "duration": round(len(audio) / SR, 3), "split": item["split"], "sample_rate": SR,
         "utt": item["utt"], "key": item["key"]}
    if "origin" in item:
        e["origin"] = item["origin"]
    return e


def build_chunk(task: dict) -> list[dict]:
    """Synthesize (or read) and clean up one chunk of a voice's utterances. One result per
    item: {"entry": ...} or {"error": reason}."""
    v: Voice = task["voice"]
    items = task["items"]
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        raws = [Path(tmp) / f"u{i}.wav" for i in range(len(items))]
        batch_error = None
        if v.source == "festival":
            try:
                batch_error = synth_festival_batch(v, [(it["text"], w) for it, w in zip(items, raws)])
            except Exception as e:  # a hung batch: every item reports it
                batch_error = describe(e)
        for it, raw in zip(items, raws):
            try:
                if v.source == "asterisk":
                    raw = Path(it["origin"])
                elif v.source == "flite":
                    synth_flite(v, it["text"], raw)
                elif v.source == "espeak":
                    synth_espeak(v, it["text"], raw)
                if not raw.is_file() or raw.stat().st_size <= 44:  # 44: a bare wav header
                    if v.source == "asterisk":
                        raise ValueError("dropped: empty recording")
                    raise RuntimeError(f"{v.source} wrote no audio"
                                       + (f" ({batch_error})" if batch_error else ""))
                audio = finish(load_audio(raw, sr=SR))
                results.append({"entry": make_entry(task, it, audio)})
            except Exception as e:
                results.append({"error": describe(e)})
    return results


def run_tasks(fn: Callable[[dict], list[dict]], tasks: list[dict], workers: int) -> list[list[dict]]:
    """fn over tasks in order, in `workers` processes (inline when 1)."""
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    with cf.ProcessPoolExecutor(min(workers, len(tasks))) as ex:
        return list(ex.map(fn, tasks, chunksize=1))


# ---------------------------------------------------------------- the build


def plan_voice(v: Voice, size: Size, seed: int, pool: list[str],
               per_voice: int | None = None) -> tuple[list[dict], list[dict]]:
    """The utterances one voice should have (path, text, split, key...), and those known
    to be unusable before any synthesis (a recording whose transcript is no speech)."""
    items, skipped = [], []
    if v.source == "asterisk":
        root = ASTERISK_ROOT / v.name
        texts = asterisk_transcripts(v.lang)
        notes = asterisk_notes()
        files = sorted(root.rglob("*.wav"))
        files.sort(key=lambda f: (stable_hash(seed, "pick", v.speaker,
                                              f.relative_to(root).as_posix()), f.name))
        n = size.per_asterisk if per_voice is None else per_voice
        for f in files[:n]:
            name = f.relative_to(root).with_suffix("").as_posix()
            transcript = texts.get(name)
            text = speech_text(transcript)
            utt = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
            key = f"v{VERSION}|{v.spec}|{name}|{f.stat().st_size}"
            if name in notes or (transcript and text is None):
                why = (f"transcript {transcript!r}" if transcript and text is None
                       else f"English transcript {notes[name]!r}")
                skipped.append({"id": f"{v.speaker}/{utt}", "speaker": v.speaker, "key": key,
                                "reason": f"dropped: no speech ({why})"})
                continue
            split = "test" if v.test else text_split(text or f"{v.speaker}/{name}", seed)
            items.append({"utt": utt, "text": text, "split": split, "origin": str(f),
                          "path": f"wav/{split}/{v.speaker}/{utt}.wav", "key": key})
        return items, skipped
    n = {"espeak": size.per_espeak}.get(v.source, size.per_voice) if per_voice is None \
        else per_voice
    for text, split in pick_texts(v, pool, n, seed):
        utt = text_id(text)
        items.append({"utt": utt, "text": text, "split": split,
                      "path": f"wav/{split}/{v.speaker}/{utt}.wav",
                      "key": f"v{VERSION}|{v.spec}|{text}"})
    return items, skipped


def read_manifest(out: Path) -> tuple[dict, list[dict]]:
    """The summary and entries an earlier run wrote ({} and [] when none or another format)."""
    try:
        summary = json.loads((out / "manifest.json").read_text())
        if summary.get("format") != FORMAT:
            return {}, []
        entries = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()
                   if ln.strip()]
        return summary, entries
    except (OSError, ValueError):
        return {}, []


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def speaker_info(v: Voice) -> dict:
    info = {"speaker": v.speaker, "source": v.source, "voice": v.name, "package": v.package,
            "lang": v.lang, "test": v.test}
    if v.rate:
        info.update(rate=v.rate, pitch=v.pitch)
    if v.talent:
        info["talent"] = v.talent  # the same person as other speakers with this talent
    return info


def count(entries: list[dict]) -> dict:
    per_speaker: dict[str, dict[str, int]] = {}
    per_split = {s: 0 for s in SPLITS}
    hours = {s: 0.0 for s in SPLITS}
    per_source: dict[str, int] = {}
    for e in entries:
        per_speaker.setdefault(e["speaker"], {s: 0 for s in SPLITS})[e["split"]] += 1
        per_split[e["split"]] += 1
        hours[e["split"]] += e["duration"] / 3600
        per_source[e["source"]] = per_source.get(e["source"], 0) + 1
    return {"utterances": len(entries), "speakers": len(per_speaker), "per_split": per_split,
            "hours": {k: round(h, 3) for k, h in hours.items()},
            "hours_total": round(sum(hours.values()), 3), "per_source": per_source,
            "per_speaker": dict(sorted(per_speaker.items()))}


@dataclass
class Build:
    out: Path
    seed: int
    workers: int
    entries: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    reused: int = 0


def build_corpus(out: Path, size: str = "default", seed: int = 0, workers: int = 2,
                 voices: Iterable[Voice] | None = None, sources: Iterable[str] = SOURCES,
                 speakers: Iterable[str] | None = None, per_voice: int | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Build (or complete) the corpus under `out`; returns the summary (manifest.json) with
    the entries under "entries" too (not written there: they are in manifest.jsonl)."""
    out = Path(out)
    preset = SIZES[size]
    if shutil.which("espeak-ng") is None:
        raise CorpusError("espeak-ng not found: it gives every utterance its phonemes; "
                          "install it: sudo apt-get install espeak-ng")
    sources = set(sources)
    wanted = [v for v in (VOICES if voices is None else voices) if v.source in sources
              and (speakers is None or any(fnmatch.fnmatch(v.speaker, p) for p in speakers))]
    found, missing = find_voices(wanted)
    if not found:
        need = sorted({m["install"].split("install ", 1)[1] for m in missing})
        raise CorpusError("no voice available to build from (" + "; ".join(
            f"{m['speaker']}: {m['reason']}" for m in missing[:4]) + "); install: "
            "sudo apt-get install " + " ".join(need))
    old_summary, old_entries = read_manifest(out)
    same_seed = old_summary.get("seed") == seed
    old = {e["key"]: e for e in old_entries} if same_seed else {}
    old_skipped = {s["key"]: s["reason"] for s in old_summary.get("skipped", [])} \
        if same_seed else {}
    b = Build(out, seed, workers)
    built_speakers = {v.speaker for v in found}
    if same_seed:  # speakers this run does not build keep their files
        b.entries += [e for e in old_entries if e["speaker"] not in built_speakers
                      and (out / e["path"]).is_file()]
        b.skipped += [s for s in old_summary.get("skipped", [])
                      if s["speaker"] not in built_speakers]
    pool = sentence_pool() if any(v.source != "asterisk" for v in found) else []

    t0 = time.time()
    tasks: list[dict[str, Any]] = []
    n_items = 0
    for v in found:
        items, pre_skipped = plan_voice(v, preset, seed, pool, per_voice)
        b.skipped += pre_skipped
        todo = []
        for it in items:
            prev = old.get(it["key"])
            if prev and prev["path"] == it["path"] and (out / it["path"]).is_file():
                b.entries.append(prev)
                b.reused += 1
            elif old_skipped.get(it["key"], "").startswith("dropped:"):
                b.skipped.append({"id": f"{v.speaker}/{it['utt']}", "speaker": v.speaker,
                                  "key": it["key"], "reason": old_skipped[it["key"]]})
            else:
                todo.append(it)
        n_items += len(items)
        tasks += [{"voice": v, "items": todo[k: k + CHUNK], "out": str(out)}
                  for k in range(0, len(todo), CHUNK)]
    n_todo = sum(len(t["items"]) for t in tasks)
    log(f"  {len(found)} voices, {n_items} utterances: {n_todo} to build, {b.reused} kept")
    if tasks:
        tasks.sort(key=lambda t: t["voice"].source != "festival")  # the slowest first
        done = 0
        for t, results in zip(tasks, run_tasks(build_chunk, tasks, workers)):
            for it, r in zip(t["items"], results):
                if "entry" in r:
                    b.entries.append(r["entry"])
                else:
                    b.skipped.append({"id": f"{t['voice'].speaker}/{it['utt']}",
                                      "speaker": t["voice"].speaker, "key": it["key"],
                                      "reason": r["error"]})
            done += len(t["items"])
        log(f"  built {done} in {time.time() - t0:.0f} s")

    # phonemes of English texts, from this run's espeak-ng (kept ones where it is the same)
    tag = {"espeak": ph.espeak_version(), "inventory": ph.INVENTORY_VERSION}
    cache = {e["text"]: e["phonemes"] for e in old_entries if e.get("phonemes") is not None} \
        if old_summary.get("phonemizer") == tag else {}
    need = sorted({e["text"] for e in b.entries if e["lang"] == "en" and e["text"]} - set(cache))
    t1 = time.time()
    for text, phones in zip(need, ph.phonemize(need, jobs=max(1, workers))):
        cache[text] = ph.to_string(ph.normalize_symbols(phones))
    if need:
        log(f"  phonemes of {len(need)} texts in {time.time() - t1:.0f} s")
    for e in b.entries:
        e["phonemes"] = cache.get(e["text"]) if e["lang"] == "en" and e["text"] else None

    entries = sorted(b.entries, key=lambda e: e["path"])
    paths = {e["path"] for e in entries}
    for e in old_entries:  # files an earlier run made that this one does not keep
        if e["path"] not in paths and e["path"].startswith("wav/") and ".." not in e["path"]:
            (out / e["path"]).unlink(missing_ok=True)
    known = {v.speaker: v for v in (*VOICES, *wanted)}
    present = {e["speaker"] for e in entries}
    summary: dict[str, Any] = {
        "format": FORMAT, "seed": seed, "size": size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sample_rate": SR, "val_fraction": VAL_FRACTION, "test_speakers": list(TEST_SPEAKERS),
        "phonemizer": tag, "counts": count(entries),
        "speakers": [speaker_info(known[s]) for s in sorted(present) if s in known],
        "missing_voices": missing, "skipped": b.skipped, "reused": b.reused,
    }
    write_jsonl(out / "manifest.jsonl", entries)
    write_json(out / "manifest.json", summary)
    _remove_empty_dirs(out / "wav")
    return {**summary, "entries": entries}


def _remove_empty_dirs(root: Path) -> None:
    if root.is_dir():
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()


def summarize(m: dict, out: Path, elapsed: float) -> str:
    c = m["counts"]
    lines = [f"speech corpus in {out} ({elapsed:.0f} s, {m['reused']} files kept from before): "
             f"{c['utterances']} utterances, {c['speakers']} speakers, {c['hours_total']:.2f} h"]
    for s in SPLITS:
        lines.append(f"  {s:5s} {c['per_split'][s]:6d} utterances {c['hours'][s]:7.2f} h")
    lines.append("  " + ", ".join(f"{k} {n}" for k, n in sorted(c["per_source"].items())))
    if m["skipped"]:
        lines.append(f"  skipped {len(m['skipped'])} (reasons in manifest.json):")
        lines += [f"    {s['id']}: {s['reason'][:90]}" for s in m["skipped"][:8]]
    if m["missing_voices"]:
        lines.append(f"  voices not available ({len(m['missing_voices'])}):")
        lines += [f"    {v['speaker']}: {v['reason']} ({v['install']})"
                  for v in m["missing_voices"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, default=Path("data/speech"), help="output folder")
    ap.add_argument("--size", choices=sorted(SIZES), default="default",
                    help="small: 3 utterances a voice; default: 400 a flite or festival voice, "
                         "120 an espeak speaker, every asterisk prompt")
    ap.add_argument("--seed", type=int, default=0, help="picks sentences and splits")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes (the results do not depend on it)")
    ap.add_argument("--sources", default=",".join(SOURCES),
                    help="comma-separated subset of " + ",".join(SOURCES))
    ap.add_argument("--speakers", help="comma-separated speaker patterns (fnmatch), e.g. "
                                       "'flite-*,espeak-en-us+*'")
    ap.add_argument("--per-voice", type=int,
                    help="utterances of every voice (overrides --size's numbers)")
    a = ap.parse_args(argv)
    sources = [s.strip() for s in a.sources.split(",") if s.strip()]
    if bad := sorted(set(sources) - set(SOURCES)):
        ap.error(f"unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")
    speakers = [s.strip() for s in a.speakers.split(",")] if a.speakers else None
    t0 = time.time()
    try:
        m = build_corpus(a.out, a.size, a.seed, a.workers, sources=sources, speakers=speakers,
                         per_voice=a.per_voice)
    except AimusicError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(m, a.out, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
