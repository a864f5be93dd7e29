#!/bin/bash
# Device run (research/gpu-small-chain.sh; carried as .gpu/, see research/JOURNAL.md): train the small codec (two variants side by side), tokenize with the better one,
# train the four small LMs side by side; everything worth keeping goes to $OUT as it is made.
# LOCAL=1 runs the same steps on this CPU with short budgets (a rehearsal).
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T=${TMPD:-/tmp/w}; rm -rf $T; mkdir -p $T
CMIN=${CMIN:-3.7}; LMIN=${LMIN:-2.5}
if [ -z "$LOCAL" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD; PYB=python3; DEV=cuda
  nvidia-smi --query-gpu=name,memory.total --format=csv
else
  PYB=.venv/bin/python; DEV=cpu
fi
$PYB -c "import torch, soundfile, soxr, librosa; print(torch.__version__, torch.cuda.is_available())" || exit 1
$PYB - <<'PY'
import soundfile as sf, pathlib, os
from concurrent.futures import ProcessPoolExecutor
T = pathlib.Path(os.environ.get("TMPD", "/tmp/w")); SRC = os.environ.get("SRC", ".gpu/data")
def conv(p):
    x, sr = sf.read(str(p), dtype="float32"); q = T / "data" / p.relative_to(SRC).with_suffix(".wav")
    q.parent.mkdir(parents=True, exist_ok=True); sf.write(str(q), x, sr)
with ProcessPoolExecutor(16) as ex: list(ex.map(conv, sorted(pathlib.Path(SRC).rglob("*.ogg"))))
PY
A="$PYB -m aimusic --device $DEV"
TR="batch_size: 32, segment_seconds: 1.0, adv_start: 1500, val_every: 1000, disc_channels: 16"
[ -n "$LOCAL" ] && TR="batch_size: 4, segment_seconds: 0.5, adv_start: 20, val_every: 20, val_clips: 2, disc_channels: 8"
printf "train: {$TR}\n" > $T/c8.yaml
printf "model: {patch: 4, channels: 32, ratios: [4, 5, 4]}\ntrain: {$TR}\n" > $T/c4.yaml
D=$T/data
for v in c8 c4; do
  $A train-codec $D/train/recorded $D/train/rendered --val-dir $D/val --preset small --config $T/$v.yaml \
     --minutes $CMIN -o $T/$v.safetensors > $T/$v.out 2>&1 &
done
wait
tail -n 3 $T/c8.out $T/c4.out
BEST=$($PYB - $T <<'PY'
import json, sys, pathlib
T = pathlib.Path(sys.argv[1]); best = None
for v in ("c8", "c4"):
    rows = [json.loads(l) for l in open(T / f"{v}.log.jsonl") if "mel_distance" in l]
    m = rows[-1]["mel_distance"] if rows else 9.0
    print(v, m, rows[-1] if rows else None, file=sys.stderr)
    if best is None or m < best[1]: best = (v, m)
print(best[0])
PY
)
echo "best codec: $BEST"
cp $T/$BEST.safetensors $OUT/codec.safetensors
mkdir -p $T/models; cp $T/$BEST.safetensors $T/models/codec.safetensors; cp .gpu/semantic.safetensors $T/models/semantic.safetensors
$A tokenize $D -o $T/tok --models $T/models > $T/tok.out 2>&1 || { tail -20 $T/tok.out; }
tail -n 3 $T/tok.out
LB=64; [ -n "$LOCAL" ] && LB=4
printf "train: {val_every: 400}\n" > $T/lm.yaml
for s in semantic coarse fine acoustic; do
  $A train-lm $T/tok --stage $s -o $T/lm --models $T/models --config $T/lm.yaml --batch-size $LB --steps 100000 --minutes $LMIN > $T/lm-$s.out 2>&1 &
done
wait
for s in semantic coarse fine acoustic; do tail -n 4 $T/lm-$s.out; cp $T/lm/lm-$s.safetensors $OUT/; done
tar czf $OUT/logs.tgz --exclude='*.safetensors' --exclude='*.pt' -C $T c8.out c4.out c8.log.jsonl c4.log.jsonl tok.out lm-semantic.out lm-coarse.out lm-fine.out lm-acoustic.out lm tok/manifest.json
ls -la $OUT
