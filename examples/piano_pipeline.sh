#!/usr/bin/env bash
# The solo piano chain (`make piano-pipeline`): the piano corpus, a piano codec trained on
# from the music codec, a piano semantic model, the LMs (flat chain and the acoustic-only
# baseline at the same budget), then the held-out test pieces continued and judged by the
# spectral measures and the note judge. Budget with the defaults, on 2 cores: about 5
# CPU-hours (corpus 0.8, codec 1 (an hour on one thread, beside the semantic model's
# 0.25), tokens 0.5, LMs 2.7 (four of 40 minutes, one thread each, two at a time)).
#
# A long budget is spent as several runs: every training step resumes where the last run
# stopped (the codec and LMs keep their training state beside them), and each run adds
# its minutes: CODEC_MINUTES=60 again trains the codec an hour more. A finished step
# leaves a mark in $OUT/.done; delete it to train that step further.
#
# A new machine has none of $OUT: the codec then starts from the float16 weights kept in
# research/checkpoints/piano (or, before there are any, from the music codec's).
#
# Knobs (environment): OUT, CORPUS, START_CODEC, CODEC_MINUTES, SEMANTIC_MINUTES,
# LM_MINUTES, CLIPS, UNTIL=STEP (corpus, codec, semantic, tokenize, lms, report).
set -euo pipefail
cd "$(dirname "$0")/.."
AIMUSIC=${AIMUSIC:-.venv/bin/aimusic}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-piano}
CORPUS=${CORPUS:-data/piano}
KEPT=research/checkpoints/piano  # float16 weights a later run (a new machine) starts from
if [ -f "$KEPT/codec.safetensors" ]; then START_CODEC=${START_CODEC:-$KEPT/codec.safetensors}
else START_CODEC=${START_CODEC:-research/checkpoints/music-codec/codec.safetensors}; fi
CODEC_MINUTES=${CODEC_MINUTES:-60}
SEMANTIC_MINUTES=${SEMANTIC_MINUTES:-15}
LM_MINUTES=${LM_MINUTES:-40}
CLIPS=${CLIPS:-16}
M="$OUT/models"
T0=$(date +%s)
mkdir -p "$OUT/.done" "$M"

source examples/steps.sh  # step NAME COMMAND...: skipped when $OUT/.done/NAME exists

codec() {  # resume the piano codec, or start it from kept weights (its schedule carries on)
  if [ -f "$M/codec.state.safetensors" ]; then how=(--resume); else how=(--init "$START_CODEC"); fi
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-codec "$CORPUS/piano" -o "$M/codec.safetensors" \
    "${how[@]}" --minutes "$CODEC_MINUTES" > "$OUT/codec.log" 2>&1
  tail -n 1 "$OUT/codec.log"
}

semantic() {
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-semantic "$CORPUS/piano" -o "$M/semantic.safetensors" \
    --iterations 2 --minutes "$SEMANTIC_MINUTES" > "$OUT/semantic.log" 2>&1
  tail -n 1 "$OUT/semantic.log"
}

models() {  # the codec and the semantic model do not depend on each other: one core each
  (step codec codec) & local a=$!
  step semantic semantic
  wait $a
}

lm() {  # lm STAGE [LAYOUT]: one LM on one core, resumed when it has a training state
  local resume=(); [ -f "$M/lm-$1.state.safetensors" ] && resume=(--resume)
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-lm "$OUT/tokens" --stage "$1" --models "$M" \
    --steps 1000000 --minutes "$LM_MINUTES" "${resume[@]}" > "$OUT/lm-$1.log" 2>&1
  tail -n 1 "$OUT/lm-$1.log"
}

lms() {  # two queues of two LMs, side by side
  (lm semantic && lm coarse) & local a=$!
  (lm fine && lm acoustic) & local b=$!
  wait $a && wait $b
}

semantic_pairs() {  # do the tokens stay with the piano and move with the notes?
  for kind in timbre pitch; do
    $AIMUSIC eval semantic "$CORPUS/pairs/$kind" --semantic "$M/semantic.safetensors" \
      --semantic aimusic/bundled/music/semantic.safetensors --codec "$M/codec.safetensors" \
      -o "$OUT/semantic-$kind.json"
  done
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

echo
echo "piano pipeline finished in $(( $(date +%s) - T0 )) s"
echo "models:  $M   report: $OUT/report/report.html   codec: $OUT/eval-codec.json"
echo "semantic pairs: $OUT/semantic-timbre.json (same notes, other piano), $OUT/semantic-pitch.json (a fourth up)"
