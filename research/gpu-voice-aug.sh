#!/bin/bash
# Device run (research/gpu-voice-aug.sh; see research/JOURNAL.md, "More voices for the whole
# chain"): do 172 voices (the speech corpus re-read at four rates) keep an unseen voice better
# than the corpus's 34? Five small LMs side by side on one GPU, the same minutes each:
#   coarse and semantic on the augmented tokens, coarse and semantic on the original items
#   of the same tokens (the control), and the reader that hears the voice on the augmented
#   tokens.
# Carried as .gpu/: tok.tar.xz (research/gpu_pack_tokens.py voice11/tokens --subset
# orig:...; coarse levels only) and manifest.jsonl.xz (data/speech-aug's manifest).
# Each model's file is copied whenever its validation cross entropy is the lowest so far;
# those copies come back. The run needs no bundled model, and the tracked bundles alone pass
# a call's 64 MiB: for the call, untrack them (`git rm -r -q --cached aimusic/bundled/music
# aimusic/bundled/voice`, both paths in .git/info/exclude), then `git reset -q --
# aimusic/bundled` and drop the exclude lines. LOCAL=1 rehearses the same steps on this CPU
# with short budgets.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T=${TMPD:-/tmp/w}; rm -rf $T; mkdir -p $T/best
MIN=${MIN:-6.0}; B=${B:-64}; VE=${VE:-250}
if [ -z "$LOCAL" ]; then
  export PYTHONPATH=$PWD; PYB=python3; DEV=cuda
  nvidia-smi --query-gpu=name,memory.total --format=csv
else
  PYB=$PWD/.venv/bin/python; DEV=cpu; export AIMUSIC_THREADS=1
fi
$PYB -c "import torch; print(torch.__version__, torch.cuda.is_available())" || exit 1
$PYB - "$T" <<'PY' || exit 1
import lzma, shutil, sys, tarfile
T = sys.argv[1]
tarfile.open(".gpu/tok.tar.xz").extractall(T, filter="fully_trusted")
with lzma.open(".gpu/manifest.jsonl.xz") as f, open(f"{T}/manifest.jsonl", "wb") as g:
    shutil.copyfileobj(f, g)
PY
printf "model: {dropout: 0.1}\ntrain: {val_every: $VE, val_windows: 32}\n" > $T/lm.yaml
A="$PYB -m aimusic --device $DEV -q"
S="--steps 100000 --minutes $MIN --batch-size $B --config $T/lm.yaml"
for d in aug:tok orig:tok/orig; do
  n=${d%%:*}; src=$T/${d#*:}
  for s in coarse semantic; do
    $A train-lm $src --stage $s -o $T/$n $S > $T/$n-$s.out 2>&1 &
  done
done
$A train-tts $T/tok --corpus $T -o $T/aug/lm-reading.safetensors $S > $T/aug-reading.out 2>&1 &
# keep the file with the lowest validation cross entropy of each run (it is rewritten, by an
# atomic rename, at every validation)
$PYB - "$T" > $T/best.out 2>&1 <<'PY' &
import json, os, shutil, sys, time
from safetensors import safe_open
T = sys.argv[1]
runs = [f"{n}/lm-{s}.safetensors" for n in ("aug", "orig") for s in ("coarse", "semantic")]
runs.append("aug/lm-reading.safetensors")
best, seen = {}, {}
while not os.path.exists(f"{T}/done"):
    for r in runs:
        p = f"{T}/{r}"
        try:
            m = os.stat(p).st_mtime_ns
            if seen.get(r) == m:
                continue
            with safe_open(p, "pt") as f:
                extra = json.loads(f.metadata()["extra"])
            ce = float(extra["val_ce"]); seen[r] = m
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            continue
        print(r, extra.get("steps"), ce, flush=True)
        if ce < best.get(r, 1e9):
            best[r] = ce
            dst = f"{T}/best/" + r.replace("/", "-")
            shutil.copy(p, dst + ".tmp"); os.replace(dst + ".tmp", dst)
    time.sleep(1)
print("best", best, flush=True)
PY
W=$!
wait $(jobs -p | grep -v "^$W$")
touch $T/done; wait $W
for f in $T/*.out; do echo "== $f"; tail -n 3 $f; done
cp $T/best/*.safetensors $OUT/
tar czf $OUT/logs.tgz -C $T --exclude='*.safetensors' --exclude='*.pt' \
    aug orig best.out aug-coarse.out aug-semantic.out orig-coarse.out orig-semantic.out aug-reading.out
ls -la $OUT
