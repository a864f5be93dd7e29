#!/usr/bin/env bash
# The demo, as plain shell commands: every stage reads and writes files.
# Until the generation stages land it shows the codec: build a small corpus of rendered
# scores, train the small codec for a few minutes, round-trip a held-out piece you can
# listen to, and measure the codec against Opus on held-out pieces.
set -euo pipefail
cd "$(dirname "$0")/.."
AIMUSIC=${AIMUSIC:-.venv/bin/aimusic}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo}
MINUTES=${MINUTES:-3}
mkdir -p "$OUT"

$PY examples/make_corpus.py --out data/corpus-small --size small
if [ ! -f "$OUT/codec.safetensors" ]; then
  $AIMUSIC train-codec data/corpus-small/rendered --minutes "$MINUTES" -o "$OUT/codec.safetensors"
fi
piece=$(find data/corpus-small/rendered/test -name '*.wav' | sort | head -1)
cp "$piece" "$OUT/original.wav"
$AIMUSIC encode "$OUT/original.wav" --codec "$OUT/codec.safetensors" --bandwidth 6
$AIMUSIC decode "$OUT/original.codes.safetensors" -o "$OUT/decoded-6kbps.wav" --codec "$OUT/codec.safetensors"
$AIMUSIC info "$OUT/original.codes.safetensors"
$AIMUSIC eval codec data/corpus-small/rendered/test --codec "$OUT/codec.safetensors" --vs-opus \
  --seconds 8 -o "$OUT/eval-codec.json"
echo
echo "listen: $OUT/original.wav  vs  $OUT/decoded-6kbps.wav"
echo "codec:  $OUT/codec.safetensors   metrics: $OUT/eval-codec.json"
