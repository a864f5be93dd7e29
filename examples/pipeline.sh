#!/usr/bin/env bash
# The whole chain on a fresh machine, as plain shell commands (`make pipeline` runs this):
# render a corpus of scores, train the small codec, semantic model and LMs, continue
# held-out prompts by 20 s with the full chain and with the acoustic-only baseline, and
# write $OUT/report.html. About 30 minutes on 2 cores with the defaults.
#
# Every step writes files the next one reads, and a finished step leaves a mark in
# $OUT/.done: a rerun skips what is built (delete a mark, or $OUT, to redo a step). A step
# that was interrupted runs again from the start (training runs are minutes long).
#
# Knobs (environment): OUT, CORPUS, PIECES, PIECE_SECONDS, CODEC_MINUTES, LM_MINUTES,
# CLIPS, PROMPT_SECONDS, CONTINUE_SECONDS, SEED; UNTIL=STEP stops after that step (corpus,
# codec, semantic, tokenize, lms, report).
set -euo pipefail
cd "$(dirname "$0")/.."
AIMUSIC=${AIMUSIC:-.venv/bin/aimusic}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-pipeline}
CORPUS=${CORPUS:-data/corpus-pipeline}
PIECES=${PIECES:-80}              # rendered pieces (train/val/test split by piece)
PIECE_SECONDS=${PIECE_SECONDS:-30}
CODEC_MINUTES=${CODEC_MINUTES:-8}
LM_MINUTES=${LM_MINUTES:-4}       # per LM; two LMs train side by side, one core each
CLIPS=${CLIPS:-6}
PROMPT_SECONDS=${PROMPT_SECONDS:-5}
SECONDS_OUT=${CONTINUE_SECONDS:-20}  # not SECONDS: bash counts time in it
SEED=${SEED:-0}
M="$OUT/models"
T0=$(date +%s)
mkdir -p "$OUT/.done" "$M"

source examples/steps.sh  # step NAME COMMAND...: skipped when $OUT/.done/NAME exists

lm() {  # lm STAGE: one LM on one core
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-lm "$OUT/tokens" --stage "$1" --models "$M" \
    --minutes "$LM_MINUTES" > "$OUT/lm-$1.log" 2>&1
  tail -n 1 "$OUT/lm-$1.log"
}

lms() {  # two queues of two LMs, side by side
  (lm semantic && lm coarse) & local a=$!
  (lm fine && lm acoustic) & local b=$!
  wait $a && wait $b
}

step corpus $PY examples/make_corpus.py --out "$CORPUS" --size small --max-pieces "$PIECES" \
  --max-seconds "$PIECE_SECONDS"
step codec $AIMUSIC train-codec "$CORPUS/rendered" -o "$M/codec.safetensors" --minutes "$CODEC_MINUTES"
step semantic $AIMUSIC train-semantic "$CORPUS/rendered" -o "$M/semantic.safetensors" --iterations 1
step tokenize $AIMUSIC tokenize "$CORPUS/rendered" -o "$OUT/tokens" --models "$M"
step lms lms
step report $AIMUSIC eval continuation "$CORPUS/rendered/test" --models "$M" -o "$OUT" \
  --layout flat --layout acoustic --clips "$CLIPS" --prompt-seconds "$PROMPT_SECONDS" \
  --seconds "$SECONDS_OUT" --seed "$SEED"

echo
echo "pipeline finished in $(( $(date +%s) - T0 )) s (steps: $(cd "$OUT/.done" && for f in *; do printf '%s %ss, ' "$f" "$(cat "$f")"; done))"
echo "corpus:  $CORPUS (rendered/train, val, test)"
echo "models:  $M (codec, semantic, lm-semantic, lm-coarse, lm-fine, lm-acoustic; logs in $OUT/lm-*.log)"
echo "tokens:  $OUT/tokens"
echo "listen:  $OUT/00-flat.wav (prompt + ${SECONDS_OUT} s), $OUT/00-acoustic.wav, $OUT/00-truth.wav"
echo "report:  $OUT/report.html   metrics: $OUT/metrics.json"
