#!/usr/bin/env bash
# The solo piano chain (`make piano-pipeline`): the piano corpus, a piano codec trained on
# from the music codec, a piano semantic model, the LMs (flat chain and the acoustic-only
# baseline at the same budget), then the held-out test pieces continued and judged by the
# spectral measures and the note judge. Budget with the defaults, on 2 cores: about 5
# CPU-hours (corpus 0.8, codec 1 (an hour on one thread, beside the semantic model's
# 0.25), tokens 0.5, LMs 2 (three of 40 minutes, one thread each, two at a time)).
#
# A long budget is spent as several runs. On one machine every training step resumes
# where the last run stopped (the codec and LMs keep their training state in $OUT), and
# each run adds its minutes; a finished step leaves a mark in $OUT/.done: delete it to
# train that step further. Across machines, `keep` (the last step) copies the chain as
# float16 into research/checkpoints/piano (commit it): a new machine's run takes that
# codec and semantic model as they are (so the tokens, and the LMs trained on them, stay
# valid) and starts each LM from its kept weights (`train-lm --init`).
#
# Knobs (environment): OUT, CORPUS, START_CODEC, CODEC_MINUTES (default 60; 0 when a
# codec is kept: set it to train the kept one further, which makes new tokens),
# SEMANTIC_MINUTES, LM_MINUTES, CLIPS, UNTIL=STEP (corpus, codec, semantic, tokenize, lms,
# codec-eval, report, keep).
set -euo pipefail
cd "$(dirname "$0")/.."
AIMUSIC=${AIMUSIC:-.venv/bin/aimusic}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-piano}
CORPUS=${CORPUS:-data/piano}
KEPT=${KEPT:-research/checkpoints/piano}  # the chain a later run (a new machine) starts from
if [ -f "$KEPT/codec.safetensors" ]; then
  START_CODEC=${START_CODEC:-$KEPT/codec.safetensors}; CODEC_MINUTES=${CODEC_MINUTES:-0}
else
  START_CODEC=${START_CODEC:-research/checkpoints/music-codec/codec.safetensors}
fi
CODEC_MINUTES=${CODEC_MINUTES:-60}
SEMANTIC_MINUTES=${SEMANTIC_MINUTES:-15}
LM_MINUTES=${LM_MINUTES:-40}
CLIPS=${CLIPS:-16}
M="$OUT/models"  # the chain: float16 codec (the tokens' codec), semantic model, LMs
T="$OUT/train"   # the codec in training: float32 with its optimizer state
T0=$(date +%s)
mkdir -p "$OUT/.done" "$M" "$T"

source examples/steps.sh  # step NAME COMMAND...: skipped when $OUT/.done/NAME exists

codec() {  # train (resume, or start from kept weights: its schedule carries on), then halve
  if [ "$CODEC_MINUTES" = 0 ]; then
    cp "$START_CODEC" "$M/codec.safetensors"
    cp "${START_CODEC%.safetensors}.log.jsonl" "$M/" 2>/dev/null || true
    echo "codec: $START_CODEC as it is (CODEC_MINUTES=0)"
    return
  fi
  if [ -f "$T/codec.state.safetensors" ]; then how=(--resume); else how=(--init "$START_CODEC"); fi
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-codec "$CORPUS/piano" -o "$T/codec.safetensors" \
    "${how[@]}" --minutes "$CODEC_MINUTES" > "$OUT/codec.log" 2>&1
  tail -n 1 "$OUT/codec.log"
  # float16 before tokenizing: the LMs record the hash of the codec file that ships
  $PY examples/bundle_models.py "$T/codec.safetensors" --half-codec "$M/codec.safetensors"
  cp "$T/codec.log.jsonl" "$M/codec.log.jsonl"
}

semantic() {  # a kept semantic model is taken as it is: it defines the semantic tokens
  cp "$KEPT/sampling.json" "$M/" 2>/dev/null || true  # the sampling the figures are measured with
  if [ -f "$KEPT/semantic.safetensors" ]; then cp "$KEPT/semantic.safetensors" "$M/"; return; fi
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-semantic "$CORPUS/piano" -o "$M/semantic.safetensors" \
    --iterations 2 --minutes "$SEMANTIC_MINUTES" > "$OUT/semantic.log" 2>&1
  tail -n 1 "$OUT/semantic.log"
}

models() {  # the codec and the semantic model do not depend on each other: one core each
  (step codec codec) & local a=$!
  step semantic semantic
  wait $a
}

lm() {  # lm STAGE: one LM on one core: resumed, or started from the kept one, or new
  local how=()
  if [ -f "$M/lm-$1.state.safetensors" ]; then how=(--resume)
  elif [ -f "$KEPT/lm-$1.safetensors" ]; then how=(--init "$KEPT"); fi
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-lm "$OUT/tokens" --stage "$1" --models "$M" \
    --steps 1000000 --minutes "$LM_MINUTES" "${how[@]}" > "$OUT/lm-$1.log" 2>&1
  tail -n 1 "$OUT/lm-$1.log"
}

lms() {  # two queues, side by side: the semantic and coarse LMs, and the acoustic-only
  # baseline at the coarse LM's budget. No fine LM: at these budgets it learns nothing (its
  # validation cross entropy stays at the unigram's) and the codec's three coarse levels
  # keep what the chain makes (BENCHMARKS.md); set FINE=1 to train one anyway.
  (lm semantic && lm coarse) & local a=$!
  (lm acoustic && if [ "${FINE:-0}" = 1 ]; then lm fine; fi) & local b=$!
  wait $a && wait $b
}

semantic_pairs() {  # do the tokens stay with the piano and move with the notes?
  for kind in timbre pitch; do
    $AIMUSIC eval semantic "$CORPUS/pairs/$kind" --semantic "$M/semantic.safetensors" \
      --semantic aimusic/bundled/music/semantic.safetensors --codec "$M/codec.safetensors" \
      -o "$OUT/semantic-$kind.json"
  done
}

keep() {  # the chain as float16 with its logs, for the next run on another machine
  mkdir -p "$KEPT"
  cp "$M/codec.safetensors" "$M/semantic.safetensors" "$KEPT/"
  cp "$M/codec.log.jsonl" "$KEPT/" 2>/dev/null || true
  for f in "$M"/lm-*.safetensors; do
    case "$f" in *.state.safetensors) continue;; esac  # training states stay on this machine
    $PY examples/bundle_models.py "$f" --half-lm "$KEPT/$(basename "$f")"
    cp "${f%.safetensors}.log.jsonl" "$KEPT/"
  done
  du -sh "$KEPT"
}

step corpus $PY examples/make_piano_corpus.py --out "$CORPUS" --size default
models
step semantic-pairs semantic_pairs
step tokenize $AIMUSIC tokenize "$CORPUS/piano" -o "$OUT/tokens" --models "$M" --workers 2
step lms lms
step codec-eval $AIMUSIC eval codec "$CORPUS/piano/test" --codec "$M/codec.safetensors" \
  --clips "$CLIPS" --seconds 10 --coherence --vs-opus -o "$OUT/eval-codec.json"
step report $AIMUSIC eval continuation "$CORPUS/piano/test" --models "$M" -o "$OUT/report" \
  --layout flat --layout acoustic --clips "$CLIPS" --seconds 10 --constructed --notes
step keep keep

echo
echo "piano pipeline finished in $(( $(date +%s) - T0 )) s"
echo "models:  $M   report: $OUT/report/report.html   codec: $OUT/eval-codec.json"
echo "kept for the next machine: $KEPT (commit it)"
echo "semantic pairs: $OUT/semantic-timbre.json (same notes, other piano), $OUT/semantic-pitch.json (a fourth up)"
