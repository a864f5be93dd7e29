"""The piano bundle's figures.json (what `aimusic demo` shows beside its piano piece), built
from the measurement files rather than copied by hand.

    python research/piano_figures.py --continuation piano/report/metrics.json \
        --codec research/results/piano-2026-12-07/eval-codec.json \
        --pairs runs/sem/pairs-timbre.json --pairs-pitch runs/sem/pairs-pitch.json \
        --models aimusic/bundled/piano --out aimusic/bundled/piano/figures.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONTINUATION_ROWS = {
    "codec": "truth through the piano codec (ceiling for the LMs)",
    "flat": "bundled chain (semantic + coarse LMs)",
    "acoustic": "acoustic-only baseline (same budget, not bundled)",
    "loop": "the prompt looped (constructed)",
    "drone": "the prompt's spectrum held still (constructed)",
}


def continuation_tables(m: dict) -> list[dict]:
    coh, notes = m["coherence"], m.get("notes") or {}
    measures = ["harmony", "rhythm", "timbre", "repetition", "overall"]
    rows = [[CONTINUATION_ROWS[r], *(round(coh[r][k], 3) for k in measures)]
            for r in CONTINUATION_ROWS if r in coh]
    s = m["settings"]
    where = (f"{len(m['clips'])} piano test clips (one file in six of the split), "
             f"{s['prompt_seconds']:g} s prompts, {s['seconds']:g} s continued")
    tables = [{"title": f"Continuation coherence ({where})", "header": ["row", *measures],
               "rows": rows,
               "note": "1 = as coherent as the true continuation, 0 = an unrelated clip. "
                       "Targets: overall >= 0.7 and above the acoustic-only baseline. "
                       "aimusic eval continuation $(ls data/piano/piano/test/*.wav | sort "
                       "| awk 'NR%6==1') --models MODELS --layout flat --layout acoustic "
                       "--clips 0 --seconds 10 --constructed --notes"}]
    if notes:
        keys = ["key", "onsets_per_s", "sounding", "confidence"]
        order = {"truth": "the true continuation", **CONTINUATION_ROWS}
        tables.append({
            "title": f"Notes (basic-pitch transcriptions, {where})",
            "header": ["row", "key agreement", "onsets per s", "sounding", "confidence"],
            "rows": [[order[r], *(round(notes[r][k], 2) for k in keys)] for r in order
                     if r in notes],
            "note": "Targets: key within 0.1 of the truth's, onsets within x1.5, confidence "
                    "within 0.05. The drone agrees in key; read key beside confidence and "
                    "rhythm."})
    return tables


def codec_table(e: dict) -> dict:
    coh = e["coherence"]["coherence"]
    rows = [["piano codec", float(k), round(v["mel_distance"], 3),
             round(coh[f"{k} kbps"]["overall"], 3)] for k, v in e["codec"].items()]
    rows += [["Opus", float(k), round(v["mel_distance"], 3), ""] for k, v in e["opus"].items()]
    return {"title": f"Codec on the first {e['clips']} files of the piano test split", "header":
            ["codec", "kbps", "mel distance", "coherence kept"], "rows": rows,
            "note": "Mel distance: lower is better. Coherence kept: the truth through the "
                    "codec against the truth (target >= 0.9 at 6 kbps; on the 29 clips of "
                    "the continuation table it keeps 0.88). The chain decodes the three "
                    "coarse levels (2.25 kbps)."}


def lm_table(models: Path) -> dict:
    rows = []
    for stage in ("semantic", "coarse"):
        log = models / f"lm-{stage}.log.jsonl"
        final = [json.loads(x) for x in log.read_text().splitlines() if '"final"' in x][-1]
        rows.append([stage, round(final["val_ce"], 3), round(final["unigram_ce"], 3)
                     if "unigram_ce" in final else "", round(final["bigram_ce"], 3)])
    return {"title": "LM validation cross entropy (nats per token, piano val split)",
            "header": ["LM", "validation", "unigram", "bigram"], "rows": rows}


def pairs_table(timbre: dict, pitch: dict) -> dict:
    rows = []
    for name, t in timbre["tokenizers"].items():
        p = pitch["tokenizers"][name]
        rows.append([name, round(t["same"], 3), round(p["same"], 3), round(t["same_other"], 3),
                     round(t["nmi"], 3), round(p["nmi"], 3)])
    return {"title": "Do the tokens follow the notes? (12 aligned pairs of piano renders)",
            "header": ["tokenizer", "same token, other piano", "same token, a fourth up",
                       "same token, other piece", "NMI other piano", "NMI a fourth up"],
            "rows": rows,
            "note": "aimusic eval semantic data/piano/pairs/{timbre,pitch}. NMI does not see "
                    "a consistent relabelling; the same-token share does."}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--continuation", type=Path, required=True)
    ap.add_argument("--codec", type=Path, required=True)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--pairs-pitch", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True, help="where the LM logs are")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    tables = continuation_tables(json.loads(a.continuation.read_text()))
    tables += [codec_table(json.loads(a.codec.read_text())), lm_table(a.models),
               pairs_table(json.loads(a.pairs.read_text()), json.loads(a.pairs_pitch.read_text()))]
    a.out.write_text(json.dumps({"tables": tables}, indent=1) + "\n")
    print(f"{a.out}: {len(tables)} tables")


if __name__ == "__main__":
    main()
