#!/usr/bin/env python
"""Build the solo piano corpus: music21's polyphonic scores played on several pianos.

    python examples/make_piano_corpus.py --size small     # 6 pieces, a minute
    python examples/make_piano_corpus.py                  # default: ~20 h (make piano-corpus)

Every part of a score goes to one piano. Each piece is rendered RENDITIONS times, each time
on a piano drawn from the General MIDI soundfonts found (FluidR3's grand and bright grand,
TimGM6mb's, MuseScore General's), at a tempo scaled by 0.85-1.15, transposed by -4..+4
semitones, with humanized velocities (a slow phrase swell, the top voice brought out, a
little noise) and onsets (about 10 ms of jitter); every rendition of a piece plays in the
same room, a reverb drawn per piece. Pieces are split 80/10/10 into train/val/test by a
hash of their name, so all renditions of a piece share its split.

Pairs for `aimusic eval semantic` (do tokens follow the notes or the piano?): PAIRS more
pieces, used nowhere else, each played once and rendered three ways, time-aligned: on two
pianos (pairs/timbre/a and b: same notes, other piano) and on the first piano a fourth
higher (pairs/pitch/b, with pairs/pitch/a a link to the unshifted render).

Layout under --out (24 kHz mono 16-bit wav):
    piano/{train,val,test}/<piece>__<k>.wav
    pairs/timbre/{a,b}/<piece>.wav, pairs/pitch/{a,b}/<piece>.wav
    manifest.json    format "aimusic.corpus/1", one entry per file (piano, tempo,
                     transposition, room), and the pieces that failed with the reason

Everything is a function of --seed and the pieces' names, never of the worker count. A
rerun keeps the files its manifest lists with the same parameters, and does not retry a
piece that failed (a bad score is skipped and reported).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from make_corpus import (
    FORMAT,
    LEAD_SECONDS,
    PIECE_TIMEOUT_S,
    SR,
    Build,
    Piece,
    _alarm,
    active_bounds,
    assign_splits,
    check_fluidsynth,
    choose_pieces,
    describe,
    list_candidates,
    load_score,
    score_to_midi,
    set_programs,
    split_of,
    stable_hash,
    summarize,
    synthesize,
)

from aimusic.audio import save_audio
from aimusic.errors import AimusicError
from aimusic.fileio import write_json

RENDER_VERSION = 1  # bump when rendering changes, to invalidate kept files
# Polyphonic collections; the folk-tune collections are single melodies, not piano music.
GROUPS = {"bach", "palestrina", "monteverdi", "josquin", "trecento", "beethoven", "mozart",
          "haydn", "schumann_robert", "schumann_clara", "beach", "chopin", "ciconia", "corelli",
          "cpebach", "handel", "johnson_j_r", "joplin", "liliuokalani", "luca", "lusitano",
          "schubert", "verdi", "weber", "webern", "schoenberg"}
# (soundfont, GM program): the pianos a rendition is drawn from, where installed
PIANOS = (("/usr/share/sounds/sf2/FluidR3_GM.sf2", 0), ("/usr/share/sounds/sf2/FluidR3_GM.sf2", 1),
          ("/usr/share/sounds/sf2/TimGM6mb.sf2", 0),
          ("/usr/share/sounds/sf3/MuseScore_General.sf3", 0))
PIANO_PACKAGES = "fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small"
LOWEST, HIGHEST = 21, 108  # the piano's keys


PAIR_SHIFT = 5  # semitones: pairs/pitch/b is pairs/timbre/a a fourth higher


@dataclass(frozen=True)
class Size:
    pieces: int
    renditions: int
    max_seconds: float
    pairs: int


SIZES = {"small": Size(6, 2, 12.0, 1), "default": Size(920, 2, 45.0, 12)}


def installed_pianos() -> list[tuple[str, int]]:
    return [p for p in PIANOS if Path(p[0]).is_file()]


def rendition_plan(piece: str, k: int, seed: int, pianos: list[tuple[str, int]]) -> dict:
    """Piano, tempo and transposition of rendition k: renditions of one piece take
    different pianos while there are enough."""
    rng = random.Random(stable_hash(seed, "rendition", piece, k))
    order = sorted(range(len(pianos)), key=lambda i: stable_hash(seed, "pianos", piece, i))
    soundfont, program = pianos[order[k % len(order)]]
    return {"soundfont": soundfont, "program": program,
            "tempo": round(rng.uniform(0.85, 1.15), 3), "transpose": rng.randint(-4, 4),
            "humanize_seed": rng.randrange(2**31)}


def room_for(piece: str, seed: int) -> dict:
    """The piece's room: reverb time, wet level and pre-delay."""
    rng = random.Random(stable_hash(seed, "room", piece))
    return {"rt60": round(rng.uniform(0.3, 1.6), 3), "wet": round(rng.uniform(0.1, 0.45), 3),
            "predelay_ms": round(rng.uniform(4, 25), 1), "seed": rng.randrange(2**31)}


def perform(midi_bytes: bytes, plan: dict) -> bytes:
    """The score's MIDI played: one piano program, tempo scaled, transposed (notes off the
    keyboard dropped), velocities and onsets humanized."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes))
    rng = np.random.default_rng(plan["humanize_seed"])
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise ValueError("no notes")
    period, phase = rng.uniform(5, 14), rng.uniform(0, 2 * np.pi)
    onsets = np.array([n.start for n in notes])
    top = np.zeros(len(notes), bool)  # the highest note of each chord (onsets within 30 ms)
    for i in np.argsort(onsets, kind="stable"):
        near = np.abs(onsets - onsets[i]) < 0.03
        top[i] = notes[i].pitch >= max(notes[j].pitch for j in np.nonzero(near)[0])
    piano = pretty_midi.Instrument(program=plan["program"], name="piano")
    for n, is_top in zip(notes, top):
        pitch = n.pitch + plan["transpose"]
        if not LOWEST <= pitch <= HIGHEST:
            continue
        swell = 1 + 0.15 * np.sin(2 * np.pi * n.start / period + phase)
        velocity = n.velocity * swell + (8 if is_top else 0) + rng.normal(0, 5)
        start = max(0.0, n.start + float(np.clip(rng.normal(0, 0.01), -0.03, 0.03)))
        stop = max(start + 0.03, n.end + float(np.clip(rng.normal(0, 0.02), -0.05, 0.05)))
        piano.notes.append(pretty_midi.Note(int(np.clip(round(velocity), 20, 124)), pitch,
                                            start * plan["tempo"], stop * plan["tempo"]))
    if not piano.notes:
        raise ValueError("no notes on the keyboard after transposition")
    out = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    out.instruments.append(piano)
    buf = io.BytesIO()
    out.write(buf)
    return buf.getvalue()


def reverb(x: np.ndarray, room: dict) -> np.ndarray:
    """x in the room: exponentially decaying noise, darker as it decays, after a pre-delay;
    the dry sound kept at full level."""
    from scipy.signal import fftconvolve, lfilter

    rng = np.random.default_rng(room["seed"])
    n = int(room["rt60"] * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / room["rt60"])
    tail = lfilter([0.4], [1, -0.6], tail)  # rooms absorb highs first
    ir = np.concatenate([np.zeros(int(room["predelay_ms"] * SR / 1000)), tail])
    ir *= room["wet"] / np.sqrt((ir ** 2).sum())
    wet = fftconvolve(x, ir)[: x.size]
    return (x + wet).astype(np.float32)


def render_piece(task: dict) -> dict:
    """Every rendition of one piece, or {"error": reason}."""
    piece: Piece = task["piece"]
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(PIECE_TIMEOUT_S)
    try:
        # the longest a rendition may need in score time: the fastest tempo stretches least
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score, part_names = load_score(piece, task["max_seconds"] / 0.85)
        composer = (score.metadata.composer if score.metadata else None) or piece.group
        monos = []
        for v in task["variants"]:
            plan = v["plan"]
            sc = copy.deepcopy(score)
            programs = [plan["program"]] * len(part_names)
            set_programs(sc, programs)
            midi = perform(score_to_midi(sc, programs), plan)
            audio = synthesize(midi, Path(plan["soundfont"]), task["max_seconds"] + LEAD_SECONDS)
            monos.append(audio.mean(axis=1))
        bounds = [active_bounds(m) for m in monos]
        if task.get("aligned"):  # pairs: one cut for every render, so they stay in time
            n = max(m.size for m in monos)
            monos = [np.pad(m, (0, n - m.size)) for m in monos]
            bounds = [(min(b[0] for b in bounds), max(b[1] for b in bounds))] * len(monos)
        entries = []
        for k, (v, mono, (start, end)) in enumerate(zip(task["variants"], monos, bounds)):
            plan = v["plan"]
            x = reverb(mono[start:end], task["room"])[: int(task["max_seconds"] * SR)]
            if x.size < SR:
                raise ValueError("rendered audio is silent or shorter than 1 s")
            x = (x * (10 ** (-1 / 20) / np.abs(x).max())).astype(np.float32)
            save_audio(Path(task["out"]) / v["path"], x, SR)
            entries.append({
                "path": v["path"], "source": task["source"], "split": task["split"],
                "duration_s": round(x.size / SR, 3), "sample_rate": SR, "piece": piece.id,
                "rendition": k, "composer": composer, "collection": piece.group,
                "parts": len(part_names), "piano": f"{Path(plan['soundfont']).name}:{plan['program']}",
                "tempo": plan["tempo"], "transpose": plan["transpose"], "room": task["room"],
                "key": task["keys"][k], **v.get("extra", {}),
            })
        return {"entries": entries}
    except Exception as e:
        return {"error": describe(e)}
    finally:
        if in_main:
            signal.alarm(0)


def piece_task(p: Piece, split: str, seed: int, pianos: list[tuple[str, int]], out: Path,
               secs: float, reps: int, tag: str) -> dict:
    """The ``reps`` renditions of p, written to piano/SPLIT/."""
    variants = [{"plan": rendition_plan(p.name, k, seed, pianos),
                 "path": f"piano/{split}/{p.name}__{k}.wav"} for k in range(reps)]
    key = f"p{RENDER_VERSION}|{p.id}|{seed}|{secs}|{tag}"
    return {"piece": p, "id": p.id, "source": "piano", "split": split, "variants": variants,
            "room": room_for(p.name, seed), "out": str(out), "max_seconds": secs,
            "key": key, "keys": [f"{key}|{k}" for k in range(reps)]}


def pair_task(p: Piece, seed: int, pianos: list[tuple[str, int]], out: Path, secs: float,
              tag: str) -> dict:
    """One performance of p on two pianos, and on the first a fourth higher."""
    first = rendition_plan(p.name, 0, seed, pianos)
    second = {**first, **{k: rendition_plan(p.name, 1, seed, pianos)[k]
                          for k in ("soundfont", "program")}}
    up = {**first, "transpose": first["transpose"] + PAIR_SHIFT}
    variants = [{"plan": plan, "path": f"pairs/{path}/{p.name}.wav", "extra": {"pair": path}}
                for plan, path in ((first, "timbre/a"), (second, "timbre/b"), (up, "pitch/b"))]
    key = f"p{RENDER_VERSION}|pair|{p.id}|{seed}|{secs}|{tag}"
    return {"piece": p, "id": p.id, "source": "piano-pair", "split": "pairs",
            "variants": variants, "room": room_for(p.name, seed), "out": str(out),
            "max_seconds": secs, "aligned": True, "key": key,
            "keys": [f"{key}|{v['extra']['pair']}" for v in variants]}


def build_piano_corpus(out: Path, size: str = "default", seed: int = 0, workers: int = 2,
                       max_pieces: int | None = None, max_seconds: float | None = None,
                       renditions: int | None = None, pairs: int | None = None) -> dict:
    preset = SIZES[size]
    n_pairs = preset.pairs if pairs is None else pairs
    n = preset.pieces if max_pieces is None else max_pieces
    secs = preset.max_seconds if max_seconds is None else max_seconds
    reps = preset.renditions if renditions is None else renditions
    check_fluidsynth()
    pianos = installed_pianos()
    if not pianos:
        raise AimusicError(f"no piano soundfont found; install: sudo apt-get install {PIANO_PACKAGES}")
    b = Build(out, seed, workers)
    order = choose_pieces([p for p in list_candidates() if p.group in GROUPS], seed)
    tag = ",".join(f"{Path(s).name}:{p}" for s, p in pianos)


    done: list[Piece] = []
    pos = 0
    while len(done) < n and pos < len(order):  # pieces that fail are replaced by the next
        batch = order[pos: pos + n - len(done)]
        pos += len(batch)
        tasks = [piece_task(p, split_of(p.name, seed), seed, pianos, out, secs, reps, tag)
                 for p in batch]
        done += [t["piece"] for t, ok in zip(tasks, b.run(render_piece, tasks, "piano")) if ok]
    _place(b, assign_splits([p.name for p in done], seed))
    paired: list[Piece] = []
    while len(paired) < n_pairs and pos < len(order):  # pieces used nowhere else
        batch = order[pos: pos + n_pairs - len(paired)]
        pos += len(batch)
        tasks = [pair_task(p, seed, pianos, out, secs, tag) for p in batch]
        paired += [t["piece"] for t, ok in zip(tasks, b.run(render_piece, tasks, "pairs")) if ok]
    for e in b.entries:  # pairs/pitch/a: the unshifted render, linked
        if e.get("pair") == "timbre/a":
            link = out / e["path"].replace("/timbre/a/", "/pitch/a/")
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(out / e["path"], link)
    manifest: dict[str, Any] = {
        "format": FORMAT, "kind": "piano", "seed": seed, "size": size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sample_rate": SR, "max_seconds": secs, "renditions": reps,
        "pianos": [f"{s}:{p}" for s, p in pianos], "pieces": len(done),
        "pairs": {"pieces": [p.id for p in paired], "shift": PAIR_SHIFT,
                  "timbre": "pairs/timbre: the same performance on two pianos",
                  "pitch": f"pairs/pitch: on one piano, b {PAIR_SHIFT} semitones above a"},
        "hours": round(sum(e["duration_s"] for e in b.entries if e["source"] == "piano") / 3600, 2),
        "entries": sorted(b.entries, key=lambda e: e["path"]), "skipped": b.skipped,
        "reused": b.reused,
    }
    write_json(out / "manifest.json", manifest)
    b.done()
    for stale in b.old_paths - {e["path"] for e in b.entries}:  # left by an earlier run
        if stale.startswith(("piano/", "pairs/")) and ".." not in stale:
            (out / stale).unlink(missing_ok=True)
    return manifest


def _place(b: Build, splits: dict[str, str]) -> None:
    """Move renditions whose piece changed split (an empty split was filled) to its folder."""
    for e in b.entries:
        if e["source"] != "piano":
            continue
        name = Path(e["path"]).stem.rsplit("__", 1)[0]
        split = splits.get(name, e["split"])
        if split != e["split"]:
            new = f"piano/{split}/{Path(e['path']).name}"
            (b.out / new).parent.mkdir(parents=True, exist_ok=True)
            (b.out / e["path"]).replace(b.out / new)
            e["path"], e["split"] = new, split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, default=Path("data/piano"), help="output folder")
    ap.add_argument("--size", choices=sorted(SIZES), default="default",
                    help="small: 6 pieces x 2 renditions of 12 s; default: 920 x 2 of 45 s")
    ap.add_argument("--seed", type=int, default=0, help="picks pieces, pianos, rooms, splits")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes (the results do not depend on it)")
    ap.add_argument("--max-pieces", type=int, help="pieces (overrides --size)")
    ap.add_argument("--max-seconds", type=float, help="cut each rendition to this length")
    ap.add_argument("--renditions", type=int, help="renditions per piece")
    ap.add_argument("--pairs", type=int, help="pieces rendered as aligned pairs")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        m = build_piano_corpus(a.out, a.size, a.seed, a.workers, a.max_pieces, a.max_seconds,
                               a.renditions, a.pairs)
    except AimusicError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(m, a.out, time.time() - t0))
    print(f"  {m['pieces']} pieces, {m['hours']} h on {len(m['pianos'])} pianos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
