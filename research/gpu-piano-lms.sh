#!/bin/bash
# Device run (issue 31): the piano LMs of the bundle's shape (`small`: 192 wide, 4 layers)
# trained on one GPU from the kept CPU weights (research/checkpoints/piano) for MIN minutes
# each, three side by side (semantic, coarse, and the acoustic-only baseline at the same
# budget), with 4x the CPU batch. It settles whether this shape, given ~30x the tokens the
# CPU runs saw, reaches the piano targets (continuation coherence >= 0.7, key within 0.1 of
# the truth's); the LMs come back small enough to bundle as they are.
#
# Prepare here, on the CPU (nothing on the CPU path depends on this script):
#   make piano-corpus && make piano-pipeline UNTIL=tokenize     # piano/tokens, kept codec
#   python research/gpu_pack_tokens.py piano/tokens --out .gpu/piano-tok.tar.xz  # ~25 MiB
#   The tracked bundles and checkpoints pass a call's 64 MiB: untrack all but the piano
#   LMs for the call (`git rm -r -q --cached aimusic/bundled research/checkpoints/music-codec
#   research/checkpoints/piano/codec.safetensors research/checkpoints/piano/semantic.safetensors`,
#   those paths and /.gpu/ in .git/info/exclude), then `git reset -q` afterwards.
# Then one device call: `bash research/gpu-piano-lms.sh` with .gpu carried.
# What comes back in $OUT: lm-{semantic,coarse,acoustic}.safetensors in float16 (5 MB each)
# and their logs. Judge them here, on the test split they never saw:
#   cp OUT/lm-*.safetensors piano/gpu/ (beside the kept codec and semantic model), then
#   aimusic eval continuation data/piano/piano/test --models piano/gpu -o piano/gpu-report \
#       --layout flat --layout acoustic --clips 12 --seconds 10 --constructed --notes
# MIN (default 8): minutes per LM. BATCH (default 64). LOCAL=1 rehearses on this CPU.
# The music set (issue 29) the same way: KEPT=research/checkpoints/music-lms
# TOKENS=.gpu/music-tok.tar.xz, from `python research/gpu_pack_tokens.py data/tokens-music2
# --out .gpu/music-tok.tar.xz` (`bash research/music_bundle.sh` makes the tokens); judge
# with the music set's command in BENCHMARKS.md (n3).
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T=${TMPD:-/tmp/w}; rm -rf "$T"; mkdir -p "$T"
MIN=${MIN:-8.0}; BATCH=${BATCH:-64}
KEPT=${KEPT:-research/checkpoints/piano}
TOKENS=${TOKENS:-.gpu/piano-tok.tar.xz}
if [ -z "$LOCAL" ]; then
  export PYTHONPATH=$PWD; PYB=python3; DEV=cuda
  nvidia-smi --query-gpu=name,memory.total --format=csv
else
  PYB=$PWD/.venv/bin/python; DEV=cpu; MIN=${MIN_LOCAL:-0.3}; BATCH=4
fi
$PYB -c "import torch; print(torch.__version__, torch.cuda.is_available())" || exit 1
[ -f "$TOKENS" ] || { echo "carry $TOKENS (see the header)"; exit 1; }
tar xJf "$TOKENS" -C "$T" || exit 1
printf "train: {val_every: 200, val_windows: 64}\n" > "$T/lm.yaml"
mkdir -p "$T/models"
for s in semantic coarse acoustic; do
  $PYB -m aimusic --device $DEV train-lm "$T/tok" --stage $s --models "$T/models" \
    --init "$KEPT" --config "$T/lm.yaml" --batch-size "$BATCH" --steps 1000000 \
    --minutes "$MIN" > "$T/lm-$s.out" 2>&1 &
done
wait
for s in semantic coarse acoustic; do
  tail -n 3 "$T/lm-$s.out"
  $PYB examples/bundle_models.py "$T/models/lm-$s.safetensors" --half-lm "$OUT/lm-$s.safetensors"
  cp "$T/models/lm-$s.log.jsonl" "$OUT/" 2>/dev/null
  cp "$T/lm-$s.out" "$OUT/"
done
ls -la "$OUT"
