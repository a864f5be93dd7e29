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
# What comes back in $OUT: lm-{semantic,coarse,acoustic}.safetensors in float16 (5 MB each),
# big/lm-coarse.safetensors, a 256 x 8 coarse LM from scratch (BIG=1, the default; 14 MB),
# judged the same way in place of lm-coarse, and logs.tar.gz (every log and output). Judge them here, on the test split they never saw:
#   cp OUT/lm-*.safetensors piano/gpu/ (beside the kept codec and semantic model), then
#   aimusic eval continuation data/piano/piano/test --models piano/gpu -o piano/gpu-report \
#       --layout flat --layout acoustic --clips 12 --seconds 10 --constructed --notes
# MIN (default 8): minutes per LM. BATCH (default 64). LOCAL=1 rehearses on this CPU.
# The music set (issue 29) the same way: KEPT=research/checkpoints/music-lms
# TOKENS=.gpu/music-tok.tar.xz, from `python research/gpu_pack_tokens.py data/tokens-music2
# --out .gpu/music-tok.tar.xz` (`bash research/music_bundle.sh` makes the tokens); judge
# with the music set's command in BENCHMARKS.md (n3).
# Onset tokens (issue 31's rhythm: the piano semantic tokens do not say when a note is
# struck, their flags do; research/JOURNAL.md 2026-12-08, sixth session): tokenize the
# corpus with the onset model (steps 1-2 of research/onsets_ab.sh: models/piano-onsets,
# data/tokens-piano-onsets), widen the kept LMs into one folder (`python
# research/semantic_onsets.py widen research/checkpoints/piano/lm-$s.safetensors
# W/lm-$s.safetensors --semantic models/piano-onsets/semantic.safetensors` for s in
# semantic coarse acoustic), pack those tokens, then KEPT=W TOKENS=<the packed onset
# tokens>. Judge beside the plain run: the semantic LM's validation cross entropy on onset
# tokens less that on plain ones is what the flags cost it; flags guessed at their rate
# alone cost 0.38 nats a token, and on the CPU (150 steps) they cost 0.35, so it had learnt
# little of when notes are struck. The oracle probe's rhythm says whether the coarse LM
# follows the flags.
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
  PYB=$PWD/.venv/bin/python; DEV=cpu; MIN=${MIN_LOCAL:-0.3}; BATCH=4; EVALW=8
fi
$PYB -c "import torch; print(torch.__version__, torch.cuda.is_available())" || exit 1
[ -f "$TOKENS" ] || { echo "carry $TOKENS (see the header)"; exit 1; }
tar xJf "$TOKENS" -C "$T" || exit 1
# (a rehearsal on the CPU measures 8 windows at the end, not the whole validation split)
printf "train: {val_every: 200, val_windows: 64, eval_windows: ${EVALW:-0}}\n" > "$T/lm.yaml"
mkdir -p "$T/models"
for s in semantic coarse acoustic; do
  $PYB -m aimusic --device $DEV train-lm "$T/tok" --stage $s --models "$T/models" \
    --init "$KEPT" --config "$T/lm.yaml" --batch-size "$BATCH" --steps 1000000 \
    --minutes "$MIN" > "$T/lm-$s.out" 2>&1 &
done
# A wider, deeper coarse LM from scratch beside them (BIG=0 skips it): given the truth's
# own semantic tokens the small coarse LM keeps no more of the prompt's rhythm than with
# the semantic LM's (research/oracle_semantic_probe.py), so the acoustic stage's capacity
# is the next thing to measure. 256 x 8 (7.2 M parameters, 3x the small shape; 14 MB in
# float16, under the 16 MiB a returned file may have) is still cheap enough for `continue`
# on 2 cores.
if [ "${BIG:-1}" = 1 ]; then
  mkdir -p "$T/big"
  printf "model: {dim: 256, layers: 8, heads: 4}\ntrain: {val_every: 200, val_windows: 64, eval_windows: ${EVALW:-0}}\n" > "$T/big.yaml"
  $PYB -m aimusic --device $DEV train-lm "$T/tok" --stage coarse --models "$T/big" \
    --config "$T/big.yaml" --batch-size "$BATCH" --steps 1000000 --minutes "$MIN" \
    > "$T/lm-coarse-big.out" 2>&1 &
fi
wait
# at most 8 files come back: the LMs, and every log and output in one archive
mkdir -p "$T/logs"
for s in semantic coarse acoustic; do
  tail -n 3 "$T/lm-$s.out"
  $PYB examples/bundle_models.py "$T/models/lm-$s.safetensors" --half-lm "$OUT/lm-$s.safetensors"
  cp "$T/models/lm-$s.log.jsonl" "$T/lm-$s.out" "$T/logs/" 2>/dev/null
done
if [ -f "$T/big/lm-coarse.safetensors" ]; then
  tail -n 3 "$T/lm-coarse-big.out"
  mkdir -p "$OUT/big"
  $PYB examples/bundle_models.py "$T/big/lm-coarse.safetensors" --half-lm "$OUT/big/lm-coarse.safetensors"
  cp "$T/big/lm-coarse.log.jsonl" "$T/logs/lm-coarse-big.log.jsonl" 2>/dev/null
  cp "$T/lm-coarse-big.out" "$T/logs/"
fi
tar czf "$OUT/logs.tar.gz" -C "$T" logs
ls -la "$OUT" "$OUT/big" 2>/dev/null
