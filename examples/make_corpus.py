#!/usr/bin/env python
"""Build the reference music corpus: rendered scores, recorded soundtracks, aligned pairs.

    python examples/make_corpus.py --size small            # ~12 rendered pieces, a minute
    python examples/make_corpus.py                         # default: ~200 pieces + soundtracks

Layout under --out (all 24 kHz mono 16-bit wav):
    rendered/{train,val,test}/<name>.wav     music21 corpus scores through fluidsynth + GM soundfont
    recorded/{train,val,test}/<pkg>__<track>.wav   Debian soundtrack packages, decoded
    pairs/{a,b}/<name>.wav                   the same held-out pieces with two disjoint
                                             instrument sets, same length and timing
    manifest.json                            format "aimusic.corpus/1", one entry per file

Everything is a function of --seed and the names of pieces and tracks, never of the worker
count. Files already listed in the manifest with the same parameters are kept, so reruns are
fast; pieces that failed are remembered and not retried. A source the run builds replaces
what an earlier run built of it (old files are removed); a source it does not build
(--no-rendered, --no-recorded, or recorded with --size small) is kept as it was.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import hashlib
import json
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aimusic.audio import load_audio, save_audio
from aimusic.errors import AimusicError
from aimusic.fileio import write_json

FORMAT = "aimusic.corpus/1"
JOURNAL = "build.journal.jsonl"  # tasks finished by a run that has not written its manifest
SR = 24000
RENDER_VERSION = 2  # bump when rendering changes, to invalidate cached files
SPLITS = ("train", "val", "test")
LEAD_SECONDS = 5.0  # leading silence a render may have before the cut starts counting
PIECE_TIMEOUT_S = 300

GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1",
    6: "Harpsichord", 11: "Vibraphone", 12: "Marimba", 19: "Church Organ", 21: "Accordion",
    24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)", 26: "Electric Guitar (jazz)",
    40: "Violin", 41: "Viola", 42: "Cello", 46: "Orchestral Harp", 48: "String Ensemble 1",
    52: "Choir Aahs", 56: "Trumpet", 57: "Trombone", 60: "French Horn", 61: "Brass Section",
    65: "Alto Sax", 68: "Oboe", 70: "Bassoon", 71: "Clarinet", 73: "Flute",
}
POOL_A = (0, 1, 4, 6, 11, 12, 24, 25, 26, 46)  # keyboards, mallets, plucked: decaying notes
POOL_B = (19, 21, 40, 41, 42, 48, 52, 56, 57, 60, 61, 65, 68, 70, 71, 73)  # sustained
POOLS = {"mixed": POOL_A + POOL_B, "a": POOL_A, "b": POOL_B}
ENSEMBLES = (0, 6, 19, 24, 48, 52)  # sometimes one sound plays every part: piano, organ, choir...

SOUNDTRACK_PACKAGES = ("ufoai-music", "nexuiz-music", "hyperrogue-music", "singularity-music",
                       "planetblupi-music-ogg", "drascula-music", "asc-music")
TRACK_EXTENSIONS = (".ogg", ".oga", ".mp3", ".flac", ".opus", ".wav")
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/soundfonts/default.sf2")
SKIP_GROUPS = {"demos", "theoryExercises"}  # not pieces; .rntxt files are analyses, not music


@dataclass(frozen=True)
class Size:
    pieces: int
    max_seconds: float
    pairs: int
    recorded: bool


SIZES = {"small": Size(12, 20.0, 4, False), "default": Size(200, 60.0, 8, True),
         "large": Size(600, 150.0, 16, True)}


class CorpusError(AimusicError):
    """A missing tool or soundfont: the run cannot start."""


@dataclass(frozen=True)
class Piece:
    id: str  # "bach/bwv66.6", "essenFolksong/kinder0#51" (tune 51 of a collection)
    group: str  # top folder of music21's corpus: composer or collection
    path: str
    number: int | None = None

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.id.replace("#", "_n")).strip("_")


@dataclass(frozen=True)
class Track:
    package: str
    path: str
    member: str | None  # an .ogg inside a .pk3 (zip) archive, as ufoai and nexuiz ship them

    @property
    def stem(self) -> str:
        return Path(self.member or self.path).stem


# ---------------------------------------------------------------- choices, all from the seed


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def list_candidates() -> list[Piece]:
    """Every piece in music21's bundled corpus; each tune of a multi-tune ABC file counts."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    seen, out = set(), []
    for path in sorted(corpus.getCorePaths()):
        rel = Path(path).relative_to(root)
        group = rel.parts[0]
        if group in SKIP_GROUPS or rel.suffix == ".rntxt":
            continue
        base = str(rel.with_suffix(""))
        numbers: list[int | None] = [None]
        if rel.suffix == ".abc":
            found = {int(n) for n in re.findall(rb"^X:\s*(\d+)", Path(path).read_bytes(), re.M)}
            if len(found) > 1:
                numbers = [n for n in sorted(found)]
        for n in numbers:
            piece = Piece(base if n is None else f"{base}#{n}", group, str(path), n)
            if piece.name not in seen:  # the same piece in two formats: keep the first
                seen.add(piece.name)
                out.append(piece)
    return out


def choose_pieces(candidates: Iterable[Piece], seed: int, n: int | None = None) -> list[Piece]:
    """Candidates in the order they are used: round robin over composers and collections
    (in a seeded order), each one's pieces shuffled by the seed. The first n are the picks;
    the rest replace pieces that fail."""
    groups: dict[str, list[Piece]] = {}
    for p in sorted(candidates, key=lambda p: p.id):
        groups.setdefault(p.group, []).append(p)
    names = sorted(groups, key=lambda g: stable_hash(seed, "group", g))
    for g in names:
        random.Random(stable_hash(seed, "pieces", g)).shuffle(groups[g])
    order = [groups[g][i] for i in range(max(map(len, groups.values()), default=0))
             for g in names if i < len(groups[g])]
    return order if n is None else order[:n]


def assign_programs(name: str, n_parts: int, seed: int, pool: str = "mixed") -> list[int]:
    """A General MIDI program per part. "mixed" sometimes gives every part one sound."""
    rng = random.Random(stable_hash(seed, "programs", pool, name))
    if pool == "mixed" and rng.random() < 0.3:
        return [rng.choice(ENSEMBLES)] * n_parts
    return [rng.choice(POOLS[pool]) for _ in range(n_parts)]


def split_fraction(name: str, seed: int) -> float:
    return stable_hash(seed, "split", name) / 2.0**64


def split_of(name: str, seed: int) -> str:
    """80/10/10 by a hash of the name: a piece's split does not depend on what else is built."""
    u = split_fraction(name, seed)
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def assign_splits(names: Iterable[str], seed: int) -> dict[str, str]:
    """split_of for each name, then, with 3 or more names, an empty split gets the name whose
    hash lies nearest to its range (taken from a split that keeps at least one)."""
    out = {n: split_of(n, seed) for n in sorted(set(names))}
    centre = {"train": 0.4, "val": 0.85, "test": 0.95}
    if len(out) >= 3:
        for s in ("test", "val", "train"):
            if s not in out.values():
                counts = {k: list(out.values()).count(k) for k in SPLITS}
                movable = [n for n in out if counts[out[n]] > 1]
                pick = min(movable, key=lambda n: (abs(split_fraction(n, seed) - centre[s]), n))
                out[pick] = s
    return out


# ---------------------------------------------------------------- scores to MIDI to audio


def find_soundfont(explicit: str | None = None) -> Path:
    for c in [explicit] if explicit else SOUNDFONTS:
        if c and Path(c).is_file():
            return Path(c).resolve()
    where = explicit or ", ".join(SOUNDFONTS)
    raise CorpusError(f"no General MIDI soundfont at {where}; "
                      "install one: sudo apt-get install fluid-soundfont-gm")


def check_fluidsynth() -> None:
    if shutil.which("fluidsynth") is None:
        raise CorpusError("fluidsynth not found; install it: sudo apt-get install fluidsynth")


def _cut(s: Any, limit: float) -> None:
    """Drop measures that start at or after `limit` quarter notes."""
    from music21 import stream

    for part in list(s.parts) or [s]:
        for m in list(part.getElementsByClass(stream.Measure)):
            if m.offset >= limit:
                part.remove(m)


def quarters_for(s: Any, seconds: float) -> float:
    """How many quarter notes from the start the first `seconds` take, by the tempo marks."""
    done, qpm = 0.0, 120.0
    for start, end, mm in s.metronomeMarkBoundaries():
        qpm = mm.getQuarterBPM() or 120.0
        if done + (end - start) * 60 / qpm >= seconds:
            return start + (seconds - done) * qpm / 60
        done += (end - start) * 60 / qpm
    return float(s.highestTime) + (seconds - done) * qpm / 60


def load_score(piece: Piece, max_seconds: float) -> tuple[Any, list[str]]:
    """Parse, cut a little past max_seconds at the fastest tempo, expand repeats (or drop
    them when malformed or cut), cut again, drop parts without notes.
    Returns (score, part names)."""
    from music21 import bar, converter, repeat, spanner, stream

    s: Any = converter.parse(piece.path, number=piece.number, forceSource=True)
    if isinstance(s, stream.Opus):
        s = s.scores[0]
    limit = quarters_for(s, max_seconds + LEAD_SECONDS + 2.0)
    _cut(s, limit)  # first, so that expanding (a deep copy) stays cheap for long movements
    try:
        s = s.expandRepeats()
    except Exception:  # malformed repeats would make the MIDI export fail: play straight
        for m in s.recurse().getElementsByClass(stream.Measure):
            if isinstance(m.leftBarline, bar.Repeat):
                m.leftBarline = None
            if isinstance(m.rightBarline, bar.Repeat):
                m.rightBarline = None
        for el in list(s.recurse().getElementsByClass((repeat.RepeatExpression,
                                                       spanner.RepeatBracket))):
            if el.activeSite is not None:
                el.activeSite.remove(el)
    _cut(s, limit)
    for part in list(s.parts):
        if not part.recurse().notes:
            s.remove(part)  # an empty part would still bring its own program change
    parts = list(s.parts) or [s]
    if not parts[0].recurse().notes:
        raise ValueError("no notes")
    return s, [str(p.partName or f"part {i + 1}") for i, p in enumerate(parts)]


def set_programs(score: Any, programs: list[int]) -> None:
    """Replace every instrument with one fresh Instrument per part carrying its program."""
    from music21 import instrument

    for old in list(score.recurse().getElementsByClass(instrument.Instrument)):
        old.activeSite.remove(old)
    for part, program in zip(list(score.parts) or [score], programs):
        inst = instrument.Instrument()
        inst.midiProgram = program
        inst.instrumentName = GM_NAMES[program]
        part.insert(0, inst)


def score_to_midi(score: Any, programs: list[int]) -> bytes:
    """MIDI bytes, checked to carry exactly these programs, ending every note at the end
    (fluidsynth keeps rendering while a held, looped sample still sounds)."""
    from music21 import midi

    data = midi.translate.streamToMidiFile(score).writestr()
    mf = midi.MidiFile()
    mf.readstr(data)
    found: set[int] = set()
    channels: set[int] = set()
    end = 0
    for tr in mf.tracks:
        end = max(end, sum(e.time for e in tr.events if isinstance(e, midi.DeltaTime)))
        for e in tr.events:
            if isinstance(e, midi.DeltaTime):
                continue
            if e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE and isinstance(e.data, int):
                found.add(e.data)
            elif e.type == midi.ChannelVoiceMessages.NOTE_ON:
                channels.add(e.channel)
    if found != set(programs):
        raise ValueError(f"MIDI has programs {sorted(found)}, not {sorted(set(programs))}")
    return with_notes_off(data, sorted(channels), end)


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n := n >> 7:
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def with_notes_off(data: bytes, channels: list[int], tick: int) -> bytes:
    """Append a track that sends sustain-off and all-notes-off to channels (1-16) at tick."""
    events = b"".join(bytes([0xB0 | (ch - 1), 64, 0, 0, 0xB0 | (ch - 1), 123, 0, 0])
                      for ch in channels)
    body = _vlq(tick) + events + b"\xff\x2f\x00"
    n_tracks = struct.unpack(">H", data[10:12])[0] + 1
    header = data[:8] + struct.pack(">HH", 1, n_tracks)  # format 1: several tracks
    return header + data[12:] + b"MTrk" + struct.pack(">I", len(body)) + body


def synthesize(midi_bytes: bytes, soundfont: Path, seconds: float) -> np.ndarray:
    """At most `seconds` of fluidsynth's float output; returns [T, 2]."""
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "piece.mid"
        mid.write_bytes(midi_bytes)
        cmd = ["fluidsynth", "-q", "-ni", "-T", "raw", "-O", "float", "-F", "-", "-r", str(SR),
               str(soundfont), str(mid)]
        need, chunks, got = int(seconds * SR) * 8, [], 0
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            while got < need and (b := proc.stdout.read(min(1 << 20, need - got))):
                chunks.append(b)
                got += len(b)
            if proc.poll() is None:  # long piece: we have what we need
                proc.kill()
            proc.wait()
    raw = b"".join(chunks)
    if not raw:
        raise RuntimeError(f"fluidsynth produced no audio (exit {proc.returncode})")
    return np.frombuffer(raw[: len(raw) // 8 * 8], dtype="<f4").reshape(-1, 2)


def active_bounds(mono: np.ndarray, thresh_db: float = -50.0) -> tuple[int, int]:
    """First and last sample of sound above thresh_db re the peak, in 10 ms frames + margin."""
    hop = SR // 100
    n = len(mono) // hop
    env = np.abs(mono[: n * hop]).reshape(n, hop).max(axis=1) if n else np.zeros(0)
    if not env.size or env.max() <= 0:
        return 0, 0
    on = np.nonzero(env > env.max() * 10 ** (thresh_db / 20))[0]
    return max(0, (on[0] - 2) * hop), min(len(mono), (on[-1] + 3) * hop)


def finish(mono: np.ndarray, start: int, end: int, max_seconds: float) -> np.ndarray:
    """Cut [start, end) to max_seconds and peak-normalise to -1 dBFS."""
    x = mono[start:end][: int(max_seconds * SR)]
    if len(x) < SR:
        raise ValueError("rendered audio is silent or shorter than 1 s")
    return (x * (10 ** (-1 / 20) / np.abs(x).max())).astype(np.float32)


def describe(e: Exception) -> str:
    """One line, without the object ids music21 puts in messages (manifests stay identical)."""
    msg = re.sub(r"id\(\)=\d+|0x[0-9a-f]+", "...", (str(e).splitlines() or [""])[0])
    return f"{type(e).__name__}: {msg}"[:300]


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError(f"piece took longer than {PIECE_TIMEOUT_S} s")


def render_piece(task: dict) -> dict:
    """Render one piece with one program set per variant (one for the rendered set, two for
    a pair, trimmed together so they stay aligned). Returns {"entries": [...]} or {"error"}."""
    piece: Piece = task["piece"]
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:  # a hung parse or render must not hang the whole run
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(PIECE_TIMEOUT_S)
    try:
        with warnings.catch_warnings():  # music21 warns about many harmless score quirks
            warnings.simplefilter("ignore")
            score, part_names = load_score(piece, task["max_seconds"])
        composer = (score.metadata.composer if score.metadata else None) or piece.group
        renders, variants = [], task["variants"]
        for i, v in enumerate(variants):
            sc = copy.deepcopy(score) if i < len(variants) - 1 else score
            programs = assign_programs(piece.name, len(part_names), task["seed"], v["pool"])
            set_programs(sc, programs)
            audio = synthesize(score_to_midi(sc, programs), Path(task["soundfont"]),
                               task["max_seconds"] + LEAD_SECONDS)
            renders.append((audio.mean(axis=1), programs))
        n = max(len(r[0]) for r in renders)
        monos = [np.pad(r[0], (0, n - len(r[0]))) for r in renders]
        bounds = [active_bounds(m) for m in monos]
        start, end = min(b[0] for b in bounds), max(b[1] for b in bounds)
        entries = []
        for i, (v, mono) in enumerate(zip(task["variants"], monos)):
            programs = renders[i][1]
            x = finish(mono, start, end, task["max_seconds"])
            save_audio(Path(task["out"]) / v["path"], x, SR)
            entries.append({
                "path": v["path"], "source": task["source"], "split": task["split"],
                "duration_s": round(len(x) / SR, 3), "sample_rate": SR, "piece": piece.id,
                "composer": composer, "collection": piece.group,
                "instruments": [{"part": pn, "program": p, "name": GM_NAMES[p]}
                                for pn, p in zip(part_names, programs)],
                "truncated": bool(end - start > len(x)), "key": task["keys"][i],
                **v.get("extra", {}),
            })
        return {"entries": entries}
    except Exception as e:
        return {"error": describe(e)}
    finally:
        if in_main:
            signal.alarm(0)


# ---------------------------------------------------------------- recorded soundtracks


def find_soundtracks(
    packages: Iterable[str] = SOUNDTRACK_PACKAGES,
) -> tuple[list[Track], list[str]]:
    """Music files the installed packages ship (also inside .pk3 archives); missing packages.
    Sound effects (a "sounds" folder) and symlinked duplicates are left out."""
    tracks, missing, seen = [], [], set()
    for pkg in packages:
        if shutil.which("dpkg") is None:  # not Debian: nothing is installed the Debian way
            missing.append(pkg)
            continue
        r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
        if r.returncode != 0:
            missing.append(pkg)
            continue
        for f in sorted(set(r.stdout.splitlines())):
            p = Path(f)
            if not p.is_file() or "sounds" in p.parts[:-1] or str(p.resolve()) in seen:
                continue
            seen.add(str(p.resolve()))
            if p.suffix.lower() in TRACK_EXTENSIONS:
                tracks.append(Track(pkg, str(p), None))
            elif p.suffix.lower() == ".pk3" and zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    tracks += [Track(pkg, str(p), m) for m in sorted(z.namelist())
                               if m.lower().endswith(TRACK_EXTENSIONS)]
    return tracks, missing


def track_names(tracks: list[Track]) -> list[str]:
    names, used = [], set()
    for t in tracks:
        base = f"{t.package}__{re.sub(r'[^A-Za-z0-9]+', '_', t.stem).strip('_')}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def decode_track(task: dict) -> dict:
    """Decode one track to 24 kHz mono 16-bit wav. Returns {"entries": [...]} or {"error"}."""
    t: Track = task["track"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(t.path)
            if t.member:
                src = Path(tmp) / f"track{Path(t.member).suffix}"
                with zipfile.ZipFile(t.path) as z:
                    src.write_bytes(z.read(t.member))
            audio = load_audio(src, sr=SR)
        save_audio(Path(task["out"]) / task["path"], audio, SR)
        origin = t.path + (f"!{t.member}" if t.member else "")
        return {"entries": [{
            "path": task["path"], "source": "recorded", "split": task["split"],
            "duration_s": round(len(audio) / SR, 3), "sample_rate": SR,
            "track": f"{t.package}/{t.member or Path(t.path).name}", "package": t.package,
            "origin": origin, "key": task["key"]}]}
    except Exception as e:
        return {"error": describe(e)}


# ---------------------------------------------------------------- the build


def run_tasks(fn: Callable[[dict], dict], tasks: list[dict], workers: int) -> Iterator[dict]:
    """fn over tasks, results yielded in order as they come, in `workers` processes (fork;
    inline when 1)."""
    if workers <= 1 or len(tasks) <= 1:
        yield from (fn(t) for t in tasks)
        return
    with cf.ProcessPoolExecutor(min(workers, len(tasks))) as ex:
        yield from ex.map(fn, tasks, chunksize=1)


class Build:
    """The state of one run: old manifest for reuse, new entries, skipped items.

    Each finished task is also appended to a journal (JOURNAL in the output folder) as it
    comes, so a run that is stopped before it writes the manifest loses nothing: the next
    run reuses what the journal names. `done` removes the journal once the manifest is
    written."""

    def __init__(self, out: Path, seed: int, workers: int) -> None:
        self.out, self.seed, self.workers = out, seed, workers
        self.manifest = old = _read_manifest(out / "manifest.json")
        self.old = {e["key"]: e for e in old.get("entries", []) if "key" in e}
        self.old_skipped = {s["key"]: s["reason"] for s in old.get("skipped", []) if "key" in s}
        self.old_paths = {e["path"] for e in old.get("entries", [])}
        self.journal = out / JOURNAL
        for line in _read_journal(self.journal):
            if "error" in line:
                self.old_skipped[line["key"]] = line["error"]
            for e in line.get("entries", []):
                self.old[e["key"]] = e
                self.old_paths.add(e["path"])
        self.entries: list[dict] = []
        self.skipped: list[dict] = []
        self.reused = 0

    def carry(self, sources: tuple[str, ...]) -> None:
        """Keep an earlier run's entries of sources this run does not build (not deleted)."""
        kept = [e for e in self.manifest.get("entries", []) if e["source"] in sources]
        self.entries += [e for e in kept if (self.out / e["path"]).is_file()]
        self.skipped += [s for s in self.manifest.get("skipped", []) if s["source"] in sources]
        self.reused += len(kept)

    def run(self, fn: Callable[[dict], dict], tasks: list[dict], label: str) -> list[bool]:
        """Run tasks not already done; reuse entries (moving files to a new split) and
        remembered failures. Returns success per task."""
        todo = []
        for t in tasks:
            entries = [self.old.get(k) for k in t["keys"]]
            if all(e and (self.out / e["path"]).is_file() for e in entries):
                t["result"] = {"entries": entries}
            elif not self.old_skipped.get(t["key"], "TimeoutError").startswith("TimeoutError"):
                t["result"] = {"error": self.old_skipped[t["key"]]}  # failed before: skip again
            else:
                todo.append(t)
        self.reused += sum(len(t["keys"]) for t in tasks if "entries" in t.get("result", {}))
        if todo:
            print(f"  {label}: {len(todo)} to build, {len(tasks) - len(todo)} kept", flush=True)
            t0 = time.time()
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a") as journal:
                for t, r in zip(todo, run_tasks(fn, todo, self.workers)):
                    t["result"] = r
                    line = {"key": t["key"], **r} if "error" in r else {"entries": r["entries"]}
                    journal.write(json.dumps(line) + "\n")
                    journal.flush()
            failed = sum("error" in t["result"] for t in todo)
            print(f"  {label}: built {len(todo) - failed}, {failed} failed, "
                  f"{time.time() - t0:.0f} s", flush=True)
        ok = []
        for t in tasks:
            r = t.pop("result")
            if "error" in r:
                self.skipped.append({"id": t["id"], "source": t["source"], "reason": r["error"],
                                     "key": t["key"]})
            else:
                self.entries += r["entries"]
            ok.append("error" not in r)
        return ok

    def place(self, source_dir: str, splits: dict[str, str]) -> None:
        """Move entries whose split changed (an empty split was filled) to their folder."""
        for e in self.entries:
            name = Path(e["path"]).stem
            split = splits.get(name, e["split"])
            if e["path"].startswith(f"{source_dir}/") and split != e["split"]:
                new = f"{source_dir}/{split}/{name}.wav"
                (self.out / new).parent.mkdir(parents=True, exist_ok=True)
                (self.out / e["path"]).replace(self.out / new)
                e["path"], e["split"] = new, split


    def done(self) -> None:
        """The manifest is written: the journal of this run is no longer needed."""
        self.journal.unlink(missing_ok=True)


def _read_journal(path: Path) -> list[dict]:
    """The lines of a build journal; a line torn by a stopped run is left out."""
    try:
        text = path.read_text()
    except OSError:
        return []
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def _read_manifest(path: Path) -> dict:
    try:
        m = json.loads(path.read_text())
        return m if m.get("format") == FORMAT else {}
    except (OSError, ValueError):
        return {}


def build_rendered(b: Build, order: list[Piece], n: int, n_pairs: int, max_seconds: float,
                   soundfont: Path) -> dict:
    """The first n pieces of `order` that render, then n_pairs more as the pair set."""
    sf_tag = soundfont.name

    def tasks_for(pieces: list[Piece], pair: bool) -> list[dict]:
        out = []
        for p in pieces:
            split = "test" if pair else split_of(p.name, b.seed)
            variants = ([{"pool": s, "path": f"pairs/{s}/{p.name}.wav", "extra": {"pair_set": s}}
                         for s in ("a", "b")] if pair else
                        [{"pool": "mixed", "path": f"rendered/{split}/{p.name}.wav"}])
            key = f"r{RENDER_VERSION}|{'pair' if pair else 'rendered'}|{p.id}|{b.seed}|" \
                  f"{max_seconds}|{sf_tag}"
            out.append({"piece": p, "id": p.id, "source": "pair" if pair else "rendered",
                        "split": split, "variants": variants, "seed": b.seed, "out": str(b.out),
                        "max_seconds": max_seconds, "soundfont": str(soundfont), "key": key,
                        "keys": [f"{key}|{v['pool']}" for v in variants]})
        return out

    pos, done = 0, {"rendered": [], "pair": []}  # type: tuple[int, dict[str, list[Piece]]]
    for source, want in (("rendered", n), ("pair", n_pairs)):
        while len(done[source]) < want and pos < len(order):
            batch = order[pos: pos + want - len(done[source])]
            pos += len(batch)
            tasks = tasks_for(batch, source == "pair")
            for t, ok in zip(tasks, b.run(render_piece, tasks, source)):
                if ok:
                    done[source].append(t["piece"])
    splits = assign_splits([p.name for p in done["rendered"]], b.seed)
    b.place("rendered", splits)
    return {"source": "separate pieces, rendered nowhere else; split 'test'",
            "pieces": [p.id for p in done["pair"]], "set_a": list(POOL_A), "set_b": list(POOL_B)}


def build_recorded(b: Build) -> list[str]:
    tracks, missing = find_soundtracks()
    names = track_names(tracks)
    splits = assign_splits(names, b.seed)
    tasks = []
    for t, name in zip(tracks, names):
        size = Path(t.path).stat().st_size
        key = f"d1|{t.path}|{t.member}|{size}"
        tasks.append({"track": t, "id": f"{t.package}/{t.member or Path(t.path).name}",
                      "source": "recorded", "split": split_of(name, b.seed), "out": str(b.out),
                      "path": f"recorded/{split_of(name, b.seed)}/{name}.wav", "key": key,
                      "keys": [key]})
    b.run(decode_track, tasks, "recorded")
    b.place("recorded", splits)
    return missing


def summarize(manifest: dict, out: Path, elapsed: float) -> str:
    rows: dict[tuple[str, str], list[float]] = {}
    for e in manifest["entries"]:
        r = rows.setdefault((e["source"], e["split"]), [0, 0.0])
        r[0] += 1
        r[1] += e["duration_s"] / 60
    lines = [f"corpus in {out} ({elapsed:.0f} s, {manifest['reused']} files kept from before)"]
    lines += [f"  {src:9s} {split:5s} {k:5d} files {m:8.1f} min"
              for (src, split), (k, m) in sorted(rows.items())]
    if manifest["skipped"]:
        lines.append(f"  skipped {len(manifest['skipped'])} (reasons in manifest.json):")
        lines += [f"    {s['id']}: {s['reason'][:90]}" for s in manifest["skipped"][:10]]
    if manifest.get("missing_packages"):
        lines.append("  soundtrack packages not installed: sudo apt-get install "
                     + " ".join(manifest["missing_packages"]))
    return "\n".join(lines)


def build_corpus(out: Path, size: str = "default", seed: int = 0, workers: int = 2,
                 rendered: bool = True, recorded: bool | None = None,
                 max_pieces: int | None = None, max_seconds: float | None = None,
                 pairs: int | None = None, soundfont: str | None = None) -> dict:
    preset = SIZES[size]
    n = preset.pieces if max_pieces is None else max_pieces
    secs = preset.max_seconds if max_seconds is None else max_seconds
    n_pairs = preset.pairs if pairs is None else pairs
    recorded = preset.recorded if recorded is None else recorded
    sf_path = None
    if rendered and n + n_pairs > 0:
        check_fluidsynth()
        sf_path = find_soundfont(soundfont)
    b = Build(out, seed, workers)
    manifest: dict[str, Any] = {
        "format": FORMAT, "seed": seed, "size": size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sample_rate": SR, "max_seconds": secs, "soundfont": str(sf_path) if sf_path else None}
    if not rendered:  # --no-rendered keeps what an earlier run rendered
        b.carry(("rendered", "pair"))
        manifest.update({k: b.manifest[k] for k in ("max_seconds", "soundfont", "pairs")
                         if k in b.manifest})
    elif sf_path is not None:
        order = choose_pieces(list_candidates(), seed)
        manifest["pairs"] = build_rendered(b, order, n, n_pairs, secs, sf_path)
    if recorded:
        manifest["missing_packages"] = build_recorded(b)
    else:
        b.carry(("recorded",))
        if "missing_packages" in b.manifest:
            manifest["missing_packages"] = b.manifest["missing_packages"]
    manifest["entries"] = sorted(b.entries, key=lambda e: e["path"])
    manifest["skipped"] = b.skipped
    manifest["reused"] = b.reused
    write_json(out / "manifest.json", manifest)
    b.done()
    for stale in b.old_paths - {e["path"] for e in b.entries}:  # left by an earlier run
        if stale.split("/")[0] in ("rendered", "recorded", "pairs") and ".." not in stale:
            (out / stale).unlink(missing_ok=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, default=Path("data/corpus"), help="output folder")
    ap.add_argument("--size", choices=sorted(SIZES), default="default",
                    help="small: 12 pieces of 20 s, no recorded; default: 200 of 60 s + "
                         "soundtracks; large: 600 of 150 s + soundtracks")
    ap.add_argument("--seed", type=int, default=0, help="picks pieces, instruments, splits")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes (the results do not depend on it)")
    ap.add_argument("--rendered", action=argparse.BooleanOptionalAction, default=True,
                    help="render scores and pairs (needs fluidsynth and a GM soundfont; "
                         "default: on)")
    ap.add_argument("--recorded", action=argparse.BooleanOptionalAction, default=None,
                    help="decode the Debian soundtrack packages (default: on unless --size small)")
    ap.add_argument("--max-pieces", type=int, help="rendered pieces (overrides --size)")
    ap.add_argument("--max-seconds", type=float,
                    help="cut rendered pieces to this length (recorded tracks stay whole)")
    ap.add_argument("--pairs", type=int, help="pieces rendered with two instrument sets")
    ap.add_argument("--soundfont", help="a General MIDI .sf2 (default: the first found of "
                                        + ", ".join(SOUNDFONTS) + ")")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        m = build_corpus(a.out, a.size, a.seed, a.workers, a.rendered, a.recorded,
                         a.max_pieces, a.max_seconds, a.pairs, a.soundfont)
    except AimusicError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(m, a.out, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
