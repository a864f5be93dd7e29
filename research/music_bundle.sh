#!/usr/bin/env bash
# The music set on the kept music codec (issue 29), on 2 CPU cores: the codec as kept in
# research/checkpoints/music-codec (float16), the bundled semantic model (its tokens do not
# depend on the codec), both corpora's train and val splits tokenized, the semantic and
# coarse LMs and the acoustic-only baseline (one thread each, two at a time), then measured
# on the test splits beside the bundled set.
#
#   bash research/music_bundle.sh
#
# Every step is skipped when its output exists (delete it to redo one); an LM whose run
# was cut off is resumed from its training state. Knobs: CODEC (the kept codec), OUT (models/music2), TOKENS
# (data/tokens-music2), LM_MINUTES (coarse and acoustic, 60), SEMANTIC_MINUTES (25), CLIPS
# (12, spread over each test split), FINE=1 also trains a fine LM (at these budgets it
# learns nothing: the chain decodes the three coarse levels without one).
#
# The kept codec's decoder can go on learning without changing its tokens, so the LMs stay
# valid: `aimusic train-codec data/corpus/recorded data/corpus/rendered --decoder-only
# --init research/checkpoints/music-codec/codec.safetensors --config
# research/configs/codec-decoder-fine.yaml --minutes 30 -o C`, then
# `examples/bundle_models.py C --half-codec OUT/codec.safetensors`.
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/aimusic
PY=.venv/bin/python
CODEC=${CODEC:-research/checkpoints/music-codec/codec.safetensors}
OUT=${OUT:-models/music2}
TOKENS=${TOKENS:-data/tokens-music2}
LM_MINUTES=${LM_MINUTES:-60}
SEMANTIC_MINUTES=${SEMANTIC_MINUTES:-25}
CLIPS=${CLIPS:-12}
mkdir -p "$OUT"

# 1. the kept codec (float16, the file that ships: the LMs record its tokens' hash) and
#    the semantic model as bundled
[ -f "$OUT/codec.safetensors" ] || cp "$CODEC" "$OUT/codec.safetensors"
cp "${CODEC%.safetensors}.log.jsonl" "$OUT/codec.log.jsonl" 2>/dev/null || true
[ -f "$OUT/semantic.safetensors" ] || cp aimusic/bundled/music/semantic.safetensors "$OUT/"
# the sampling the bundle's figures were measured with (plain: step 4's probe says why)
[ -f "$OUT/sampling.json" ] || cp aimusic/bundled/music/sampling.json "$OUT/"

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

# 3. the LMs, two queues on one thread each: (coarse, then semantic) and (acoustic-only
#    baseline at the coarse LM's budget [, fine])
lm() {  # lm STAGE MINUTES: a finished LM (its log's "final" line) is kept as it is; a
  # resumed finished run would start its schedule again and overwrite it
  local how=()
  grep -qs '"final"' "$OUT/lm-$1.log.jsonl" && return 0
  [ -f "$OUT/lm-$1.state.safetensors" ] && how=(--resume)
  AIMUSIC_THREADS=1 $A --quiet train-lm "$TOKENS" --stage "$1" --models "$OUT" --steps 1000000 \
    --minutes "$2" "${how[@]}" > "$OUT/lm-$1.out" 2>&1
  tail -n 2 "$OUT/lm-$1.out"
}
(lm coarse "$LM_MINUTES" && lm semantic "$SEMANTIC_MINUTES") & a=$!
(lm acoustic "$LM_MINUTES" && if [ "${FINE:-0}" = 1 ]; then lm fine "$SEMANTIC_MINUTES"; fi) & b=$!
wait $a && wait $b
for stage in semantic coarse acoustic; do
  [ -f "$OUT/eval-lm-$stage.json" ] || $A --quiet eval lm "$TOKENS" --models "$OUT" --stage $stage \
    -o "$OUT/eval-lm-$stage.json"
done

# 4. the test splits: continuations of the new chain (flat and acoustic-only, with the
#    set's plain sampling) and of the bundled one, on the same clips; the probe adds the
#    flat chain at the global default sampling
for kind in recorded rendered; do
  [ -f "$OUT/continuation-$kind/metrics.json" ] || AIMUSIC_THREADS=1 $A --quiet eval continuation \
    data/corpus/$kind/test --models "$OUT" -o "$OUT/continuation-$kind" --clips "$CLIPS" \
    --seconds 10 --layout flat --layout acoustic --constructed &
  [ -f "$OUT/sampling-$kind/sampling.json" ] || AIMUSIC_THREADS=1 $PY research/continuation_sampling_probe.py \
    data/corpus/$kind/test --models "$OUT" --out "$OUT/sampling-$kind" --clips "$CLIPS" \
    --row default= > /dev/null &
  wait
  [ -f "$OUT/bundled-$kind/metrics.json" ] || $A --quiet eval continuation data/corpus/$kind/test \
    --models aimusic/bundled/music -o "$OUT/bundled-$kind" --clips "$CLIPS" --seconds 10 --layout flat
done
stages=semantic,coarse; [ "${FINE:-0}" = 1 ] && stages=$stages,fine
echo "done: $OUT; bundle with: $PY examples/bundle_models.py $OUT --name music --stages $stages"
