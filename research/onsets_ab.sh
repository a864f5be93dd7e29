#!/usr/bin/env bash
# A/B: the piano chain's LMs trained further on plain semantic tokens, or on the same
# tokens with onset flags (research/semantic_onsets.py), the same steps from the bundled
# LMs (the onset arm from their widened copies), one core each, side by side.
#
#   bash research/onsets_ab.sh            # after `make piano-corpus` (or part of it)
#   COARSE_STEPS=300 SEMANTIC_STEPS=120 LR=3e-4 bash research/onsets_ab.sh
#
# Writes models/ab-plain and models/ab-onsets (each a whole chain: codec, semantic model,
# LMs, sampling.json), then judges both on the 29 piano test clips of data/piano-clips
# (research/piano_render_clips.py): the coarse LM rendering the truth's own tokens
# (oracle_semantic_probe.py) and the whole chain (eval continuation); logs and results in
# runs/onsets-ab/. Compare with research/continuation_compare.py.
# The 2026-12-08 run (COARSE_STEPS=400 SEMANTIC_STEPS=150, 7.4 h of the corpus): a tie, and
# both arms below the bundle: train-lm's warm restart peaks at lr 2e-3, which a short run
# on a part of the corpus does not recover from (research/JOURNAL.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
AIMUSIC=".venv/bin/aimusic"
BUNDLE=aimusic/bundled/piano
CORPUS=${CORPUS:-data/piano/piano}
COARSE_STEPS=${COARSE_STEPS:-300}
SEMANTIC_STEPS=${SEMANTIC_STEPS:-120}
LOG=runs/onsets-ab
mkdir -p "$LOG" models/piano-onsets models/piano-onsets-init models/ab-plain models/ab-onsets

# 1. the onset model (the bundle's clusters, flags added) and the bundle's LMs widened to it
cp "$BUNDLE/codec.safetensors" models/piano-onsets/
[ -f models/piano-onsets/semantic.safetensors ] || \
  $PY research/semantic_onsets.py model "$BUNDLE/semantic.safetensors" models/piano-onsets/semantic.safetensors
for s in semantic coarse; do
  [ -f "models/piano-onsets-init/lm-$s.safetensors" ] || $PY research/semantic_onsets.py widen \
    "$BUNDLE/lm-$s.safetensors" "models/piano-onsets-init/lm-$s.safetensors" \
    --semantic models/piano-onsets/semantic.safetensors
done

# 2. tokens once, with the flags; the plain tokens are the same with the flags dropped
$AIMUSIC --quiet tokenize "$CORPUS" -o data/tokens-piano-onsets --models models/piano-onsets --workers 2
[ -f data/tokens-piano-plain/manifest.json ] || $PY research/semantic_onsets.py drop \
  data/tokens-piano-onsets data/tokens-piano-plain --semantic "$BUNDLE/semantic.safetensors"

# 3. each arm a whole chain
for arm in plain onsets; do
  cp "$BUNDLE/codec.safetensors" "$BUNDLE/sampling.json" "models/ab-$arm/"
done
cp "$BUNDLE/semantic.safetensors" models/ab-plain/
cp models/piano-onsets/semantic.safetensors models/ab-onsets/

# LR: the schedule's peak (train-lm's small preset: 2e-3, which a warm start on part of the
# corpus did not recover from in 400 steps; try 3e-4)
CFG=()
if [ -n "${LR:-}" ]; then printf "train: {lr: %s}\n" "$LR" > "$LOG/lr.yaml"; CFG=(--config "$LOG/lr.yaml"); fi
lm() {  # lm ARM STAGE STEPS INIT
  AIMUSIC_THREADS=1 $AIMUSIC --quiet train-lm "data/tokens-piano-$1" --stage "$2" \
    --models "models/ab-$1" --steps "$3" --init "$4" "${CFG[@]}" > "$LOG/$1-$2.log" 2>&1
  tail -n 1 "$LOG/$1-$2.log"
}
(lm plain coarse "$COARSE_STEPS" "$BUNDLE" && lm plain semantic "$SEMANTIC_STEPS" "$BUNDLE") &
a=$!
lm onsets coarse "$COARSE_STEPS" models/piano-onsets-init
lm onsets semantic "$SEMANTIC_STEPS" models/piano-onsets-init
wait $a

# 4. judge both arms on the 29 test clips, one core each
judge() {
  AIMUSIC_THREADS=1 $PY research/oracle_semantic_probe.py data/piano-clips/piano/test \
    --models "models/ab-$1" --clips 29 --notes --out "$LOG/oracle-$1.json" > "$LOG/oracle-$1.log" 2>&1
  AIMUSIC_THREADS=1 $AIMUSIC eval continuation data/piano-clips/piano/test --models "models/ab-$1" \
    --layout flat --clips 0 --seconds 10 --notes -o "$LOG/cont-$1" > "$LOG/cont-$1.log" 2>&1
}
judge plain & a=$!
judge onsets
wait $a
$PY research/continuation_compare.py "$LOG/oracle-onsets.json:oracle" "$LOG/oracle-plain.json:oracle"
$PY research/continuation_compare.py "$LOG/cont-onsets/metrics.json:flat" "$LOG/cont-plain/metrics.json:flat"
