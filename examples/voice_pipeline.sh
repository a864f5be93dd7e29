#!/usr/bin/env bash
# The voice chain on the speech corpus, as plain shell commands (`make voice-pipeline`):
# a codec (or the music codec, CODEC=path), a semantic model, tokens, the semantic, coarse
# and fine LMs (speech continuation) and the reading LM (`speak`), then continuations and
# speech for the held-out test voices, judged by `aimusic eval voice` ($OUT/voice.json).
#
# Every step leaves a mark in $OUT/.done: a rerun skips what is built (delete a mark to
# redo a step). Needs `make speech-corpus` first.
#
# Knobs (environment): OUT, SPEECH, CODEC, CODEC_PRESET, SEMANTIC_PRESET, CODEC_MINUTES,
# LM_MINUTES, TTS_MINUTES, ITEMS, SEED; UNTIL=STEP stops after that step (codec, semantic,
# tokenize, lms, outputs, eval): `UNTIL=tokenize` makes the tokens on a CPU for LMs trained
# on a GPU (research/gpu_pack_tokens.py, research/gpu-voice-aug.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
AIMUSIC=${AIMUSIC:-.venv/bin/aimusic}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-voice}
SPEECH=${SPEECH:-data/speech}
CODEC=${CODEC:-}                  # a codec file to reuse instead of training one
CODEC_PRESET=${CODEC_PRESET:-speech}  # small's encoder, inverse-STFT decoder
# MFCCs alone, normalized per file: more of the words, less of the voice than small's
# (research/JOURNAL.md, "Do the semantic tokens carry the words?"); small is the bundle's
SEMANTIC_PRESET=${SEMANTIC_PRESET:-speech}
CODEC_MINUTES=${CODEC_MINUTES:-50}
LM_MINUTES=${LM_MINUTES:-10}      # per LM; two train side by side, one core each
TTS_MINUTES=${TTS_MINUTES:-10}
ITEMS=${ITEMS:-12}                # outputs per test voice and task
SEED=${SEED:-0}
M="$OUT/models"
mkdir -p "$OUT/.done" "$M"
[ -f "$SPEECH/manifest.jsonl" ] || { echo "no $SPEECH/manifest.jsonl: run make speech-corpus"; exit 1; }

source examples/steps.sh  # step NAME COMMAND...: skipped when $OUT/.done/NAME exists

codec() {
  if [ -n "$CODEC" ]; then cp "$CODEC" "$M/codec.safetensors"
  else  # trained in float32, kept as float16 (before tokenizing: the LMs record its hash)
    $AIMUSIC train-codec "$SPEECH/wav" --preset "$CODEC_PRESET" -o "$OUT/codec-float32.safetensors" \
      --minutes "$CODEC_MINUTES"
    $PY examples/bundle_models.py "$OUT/codec-float32.safetensors" --half-codec "$M/codec.safetensors"
  fi
}

lm() {  # lm STAGE: one LM on one core
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-lm "$OUT/tokens" --stage "$1" --models "$M" \
    --minutes "$LM_MINUTES" > "$OUT/lm-$1.log" 2>&1
  tail -n 1 "$OUT/lm-$1.log"
}

tts() {
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-tts "$OUT/tokens" --corpus "$SPEECH" --models "$M" \
    --minutes "$TTS_MINUTES" > "$OUT/lm-reading.log" 2>&1
  tail -n 1 "$OUT/lm-reading.log"
}

lms() {  # two queues side by side: semantic then reading, coarse then fine
  (lm semantic && tts) & local a=$!
  (lm coarse && lm fine) & local b=$!
  wait $a && wait $b
}

step codec codec
step semantic $AIMUSIC train-semantic "$SPEECH/wav" -o "$M/semantic.safetensors" --iterations 1 \
  --preset "$SEMANTIC_PRESET"
step tokenize $AIMUSIC tokenize "$SPEECH/wav" -o "$OUT/tokens" --models "$M"
step lms lms
step outputs $PY examples/voice_outputs.py --corpus "$SPEECH" --models "$M" --out "$OUT/outputs" \
  --items "$ITEMS" --seed "$SEED"
step eval $AIMUSIC eval voice "$SPEECH" -g "$OUT/outputs/outputs.jsonl" -o "$OUT/voice.json"
