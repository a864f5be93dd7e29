#!/bin/bash
# Device run (research/gpu-speech-decoder.sh; research/JOURNAL.md, "Where the codec loses the
# voice" and "Prompt EQ"): the bundled speech codec's decoder trained on alone, adversarially
# from the first step, on a GPU (`train-codec --init --decoder-only`: the encoder and codebooks
# stay, so every token and bundled LM stays valid). The CPU runs (one hour of reconstruction
# losses, two adversarial) did not give back the magnitudes the decoder loses; this asks what
# GPU minutes do. Since "Where the words go" (research/JOURNAL.md) the magnitude loss passes its
# gradient below the floor (codec.train.floored): judge first whether the predicted 2.5-8 kHz
# band comes back (the round trip's WER; the --keep magnitude --band 1000:4000 --envelope
# row is the ceiling for these tokens).
# Carried as .gpu/: speech.tar (python research/gpu_pack_audio.py data/speech/wav
# .gpu/speech.tar --minutes 30: about 35 MiB of FLAC, the test voices never in it) and
# codec.safetensors (cp aimusic/bundled/voice/codec.safetensors .gpu/). The run needs no
# bundled model, and the tracked bundles alone pass a call's 64 MiB: for the call, untrack
# them (`git rm -r -q --cached aimusic/bundled/music aimusic/bundled/voice`, both paths in
# .git/info/exclude), then `git reset -q -- aimusic/bundled` and drop the exclude lines.
# The codec file and the training log come back in $OUT; judge them here with
# `python examples/voice_outputs.py --roundtrip OUT/codec.safetensors [--prompt-eq] --items 10`,
# `aimusic eval voice` and `python research/codec_speaker_probe.py OUT/codec.safetensors`.
# WHOLE=1 trains the whole codec instead (encoder, codebooks and decoder, from the bundled
# weights): since "How much of the words' envelope the speech codec gives back"
# (research/JOURNAL.md, 2026-12-02) this is the run to make. research/codec_envelope_probe.py
# found the bundled decoder gives back as much of the test voices' 1-4 kHz envelope as an
# MLP reading its tokens does, and more than a linear map (R^2 0.58, 0.57, 0.48; Opus 6 kbps
# 0.86, 12 kbps 0.94): the tokens, not the decoder, hold too little of it. A whole-codec
# file has new tokens: the corpus must be tokenized again and the coarse and fine LMs
# trained again on it (research/gpu-voice-aug.sh) before it ships. Judge it first with
# `python research/codec_envelope_probe.py OUT/codec.safetensors` (the decoded row's
# 1-4 kHz R^2 on speech frames; the WER target wants about 0.9).
# SCRATCH=1 trains a fresh codec of the `speech` preset instead (no --init, no codec.safetensors
# needed; adversarial after VE steps): since "A spectral encoder for speech" (research/JOURNAL.md,
# 2026-12-02) that preset reads the STFT, and 70 CPU-minutes of it from scratch cut the
# round trip's WER from 3.98 to about 1.5 times the recordings'. This is now the run to make;
# judge it as above, then tokenize data/speech-aug and train the coarse and fine LMs on it.
# LOCAL=1 rehearses the same steps on this CPU with a short budget.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T=${TMPD:-/tmp/w}; rm -rf "$T"; mkdir -p "$T"
MIN=${MIN:-7.0}; B=${B:-32}; VE=${VE:-1000}
if [ -z "$LOCAL" ]; then
  export PYTHONPATH=$PWD; PYB=python3; DEV=cuda
  nvidia-smi --query-gpu=name,memory.total --format=csv
else
  PYB=$PWD/.venv/bin/python; DEV=cpu
fi
$PYB -c "import torch; print(torch.__version__, torch.cuda.is_available())" || exit 1
[ -f .gpu/speech.tar ] && { [ -n "$SCRATCH" ] || [ -f .gpu/codec.safetensors ]; } || {
  echo "carry .gpu/ (see the header)"; exit 1; }
tar xf .gpu/speech.tar -C "$T" || exit 1
# adversarial from the first step (the decoder starts trained; from scratch, after VE
# steps); a discriminator twice as wide as the CPU runs' (16 channels; `base` has 32)
ADV=0; [ -n "$SCRATCH" ] && ADV=$VE
printf "train: {adv_start: $ADV, disc_channels: 16, val_every: $VE, val_clips: 16}\n" > "$T/gan.yaml"
INIT="--init .gpu/codec.safetensors --decoder-only"
[ -n "$WHOLE" ] && INIT="--init .gpu/codec.safetensors"
[ -n "$SCRATCH" ] && INIT=
$PYB -m aimusic --device $DEV -q train-codec "$T/train" --val-dir "$T/val" \
  $INIT --preset speech --config "$T/gan.yaml" \
  --batch-size "$B" --minutes "$MIN" -o "$T/codec.safetensors" > "$T/train.out" 2>&1
rc=$?
tail -n 20 "$T/train.out"
cp "$T"/codec.safetensors "$OUT/" 2>/dev/null
cp "$T"/*.log.jsonl "$T/train.out" "$OUT/" 2>/dev/null
ls -la "$OUT"
exit $rc
