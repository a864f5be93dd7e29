#!/usr/bin/env bash
# The music bundle rebuilt on a trained music codec (issue 29), on 2 CPU cores: the codec
# stored as float16, the bundled semantic model kept (its tokens do not depend on the
# codec), both corpora's train and val splits tokenized, the four LMs trained two at a time
# (one thread each), then measured on the test splits beside the bundle they replace.
#
#   bash research/music_bundle.sh
#
# Without CODEC's file it first trains one: the `music` preset, CODEC_MINUTES on
# CODEC_THREADS threads, from scratch or, with INIT=<a music codec> (the bundled one, say),
# from that codec with its schedule carried on, so a later run continues an earlier one.
# Steps are skipped when their output exists (delete it to redo one). Knobs: CODEC, OUT
# (models/music-bundle), TOKENS (data/tokens-music), LM_MINUTES (coarse and acoustic;
# semantic and fine get LM_MINUTES_SHORT), CLIPS (12).
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/aimusic
PY=.venv/bin/python
CODEC=${CODEC:-models/music/codec.safetensors}
OUT=${OUT:-models/music-bundle}
TOKENS=${TOKENS:-data/tokens-music}
LM_MINUTES=${LM_MINUTES:-25}
LM_MINUTES_SHORT=${LM_MINUTES_SHORT:-20}
CLIPS=${CLIPS:-12}
CODEC_MINUTES=${CODEC_MINUTES:-50}
CODEC_THREADS=${CODEC_THREADS:-1}
mkdir -p "$OUT"

# 0. the codec, on both corpora's train splits (validated on their val splits)
if [ ! -f "$CODEC" ]; then
  mkdir -p "$(dirname "$CODEC")"
  AIMUSIC_THREADS=$CODEC_THREADS $A train-codec data/corpus/recorded data/corpus/rendered \
    --minutes "$CODEC_MINUTES" ${INIT:+--init "$INIT"} -o "$CODEC" > "${CODEC%.safetensors}.out" 2>&1
fi

# 1. the codec in float16 (the LMs record the hash of the file that ships), the semantic
#    model as bundled
[ -f "$OUT/codec.safetensors" ] || $PY examples/bundle_models.py "$CODEC" --half-codec "$OUT/codec.safetensors"
cp "$(dirname "$CODEC")/codec.log.jsonl" "$OUT/codec.log.jsonl"
[ -f "$OUT/semantic.safetensors" ] || cp aimusic/bundled/music/semantic.safetensors "$OUT/"

# 2. train and val splits of both corpora, linked into one folder (test is never read)
D=data/music-lm
if [ ! -d "$D" ]; then
  for split in train val; do
    mkdir -p "$D/$split"
    for kind in recorded rendered; do
      for f in data/corpus/$kind/$split/*.wav; do ln -s "$PWD/$f" "$D/$split/${kind}__$(basename "$f")"; done
    done
  done
fi
[ -f "$TOKENS/manifest.json" ] || $A tokenize "$D" -o "$TOKENS" --models "$OUT" --workers 2

# 3. the LMs, two at a time on one thread each
lm() {  # lm STAGE MINUTES
  [ -f "$OUT/lm-$1.safetensors" ] && return 0
  AIMUSIC_THREADS=1 $A train-lm "$TOKENS" --stage "$1" --models "$OUT" --steps 100000 \
    --minutes "$2" > "$OUT/lm-$1.out" 2>&1
  tail -n 2 "$OUT/lm-$1.out"
}
lm coarse "$LM_MINUTES" & lm acoustic "$LM_MINUTES" & wait
lm semantic "$LM_MINUTES_SHORT" & lm fine "$LM_MINUTES_SHORT" & wait
[ -f "$OUT/eval-lm.json" ] || $A eval lm "$TOKENS" --models "$OUT" -o "$OUT/eval-lm.json"
[ -f "$OUT/eval-lm-acoustic.json" ] || $A eval lm "$TOKENS" --models "$OUT" --stage acoustic \
  -o "$OUT/eval-lm-acoustic.json"

# 4. the test splits: codec round trip and continuations, the new chain and the old
for kind in recorded rendered; do
  n=23; [ $kind = rendered ] && n=16
  [ -f "$OUT/eval-codec-$kind.json" ] || $A eval codec data/corpus/$kind/test --codec "$OUT/codec.safetensors" \
    --clips $n --seconds 10 --coherence --vs-opus -o "$OUT/eval-codec-$kind.json"
  [ -f "$OUT/continuation-$kind/metrics.json" ] || $A eval continuation data/corpus/$kind/test \
    --models "$OUT" -o "$OUT/continuation-$kind" --clips "$CLIPS" --seconds 10 \
    --layout flat --layout acoustic
done
echo "done: $OUT; bundle with: $PY examples/bundle_models.py $OUT --name music"
