# aimusic — every target creates what it needs. `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU wheel of torch (already on disk on our CPU machines: no CUDA download).
# GPU users: `make install TORCH=torch` (or any CUDA build) keeps pip's choice.
TORCH   ?= torch==2.13.0
APT_PKGS_TEST  := fluidsynth fluid-soundfont-gm opus-tools hyperrogue-music chromium-headless-shell \
                  espeak-ng flite
# What `make demo` uses beyond pip: espeak-ng reads the spoken sentence's text.
APT_PKGS_DEMO  := espeak-ng
APT_PKGS_MUSIC := ufoai-music nexuiz-music hyperrogue-music singularity-music \
                  planetblupi-music-ogg drascula-music asc-music
# Speech corpus voices and texts (examples/make_speech_corpus.py); a missing one is skipped.
SPEECH_APT := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
              fortunes-min asterisk-core-sounds-en asterisk-core-sounds-en-wav \
              asterisk-core-sounds-es asterisk-core-sounds-es-wav asterisk-core-sounds-fr \
              asterisk-core-sounds-fr-wav asterisk-core-sounds-it asterisk-core-sounds-it-wav \
              asterisk-core-sounds-ru asterisk-core-sounds-ru-wav
# Pianos of the piano corpus (examples/make_piano_corpus.py); a missing one is left out.
PIANO_APT := fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small
CORPUS  ?= data/corpus
PIANO   ?= data/piano
SPEECH  ?= data/speech
MODELS  ?= models

.PHONY: help install system-deps demo-deps music-deps test test-slow lint bench corpus corpus-small piano-deps piano-corpus piano-pipeline speech-deps speech-corpus demo demo-codec pipeline voice-pipeline clean

help:
	@echo "make install      .venv with the CPU torch wheel and aimusic (editable, dev tools)"
	@echo "make demo         the bundled models continue a recorded piece by 20 s: demo/report.html"
	@echo "make pipeline     render a corpus, train every stage (~30 min on 2 cores), pipeline/report.html"
	@echo "make test         the test suite (fast, tiny presets); make test-slow for long checks"
	@echo "make lint         ruff + mypy"
	@echo "make bench        speed and memory benchmarks (BENCHMARKS.md)"
	@echo "make corpus       reference corpora: rendered scores + recorded soundtracks ($(CORPUS))"
	@echo "make piano-corpus  solo piano: scores on several pianos, ~20 h ($(PIANO))"
	@echo "make piano-pipeline train the piano chain (~6 CPU-hours, resumable): piano/report/"
	@echo "make speech-corpus  speech: flite, festival, espeak-ng voices + recorded prompts ($(SPEECH))"
	@echo "make voice-pipeline train the voice models on the speech corpus, judge the test voices (voice/)"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,eval]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps 'basic-pitch==0.4.0'
	@touch $@

# $(call apt_install,PACKAGES,WHAT HAPPENS WITHOUT THEM): install the missing ones with
# apt-get (as root or with sudo); never fatal, it says what is left out.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "note: cannot install$$missing (not root, no sudo); $(2)"; exit 0; fi; \
	echo "installing$$missing"; \
	($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null) \
	  || echo "note: apt-get could not install$$missing; $(2)"
endef

# Debian packages the tests and corpus use; skipped with a message where apt is unavailable.
system-deps:
	$(call apt_install,$(APT_PKGS_TEST),tests that need them will skip)

music-deps:
	@missing=""; for p in $(APT_PKGS_MUSIC); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null) \
	  || { echo "error: could not install$$missing (apt-get install$$missing)"; exit 1; }; fi

test: install system-deps
	$(BIN)/python -m pytest -q

test-slow: install system-deps
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check aimusic tests examples benchmarks research
	$(BIN)/mypy aimusic

# EnCodec is the speed reference; --no-deps keeps torchaudio out (it is never imported for real)
bench: install system-deps
	$(BIN)/pip install -q --no-deps encodec einops
	$(BIN)/python benchmarks/bench_codec.py --json benchmarks/codec.json
	$(BIN)/python benchmarks/bench_speak.py --json benchmarks/speak.json

corpus-small: install system-deps
	$(BIN)/python examples/make_corpus.py --out $(CORPUS) --size small

corpus: install system-deps music-deps
	$(BIN)/python examples/make_corpus.py --out $(CORPUS) --size default

piano-deps:
	$(call apt_install,$(PIANO_APT),the corpus uses the pianos that are installed)

# Solo piano, ~20 h: music21's polyphonic scores on several pianos (issue 31); reruns skip
piano-corpus: install piano-deps
	$(BIN)/python examples/make_piano_corpus.py --out $(PIANO) --size default

# The piano chain on the piano corpus (examples/piano_pipeline.sh): ~6 CPU-hours, resumable;
# piano/report/report.html. Reruns go on where the last run stopped.
piano-pipeline: install piano-deps
	bash examples/piano_pipeline.sh

speech-deps:
	$(call apt_install,$(SPEECH_APT),their voices are skipped)

# ~8,400 utterances, 36 speakers, 7.1 h at 16 kHz; 3.5-5 min on 2 cores, reruns in seconds
speech-corpus: install speech-deps
	$(BIN)/python examples/make_speech_corpus.py --out $(SPEECH) --size default

# The whole chain from nothing (examples/pipeline.sh): a rendered corpus, the small codec,
# semantic model and LMs, continuations of held-out prompts scored in pipeline/report.html.
# Reruns reuse what is built.
pipeline: install system-deps
	bash examples/pipeline.sh

# The voice chain on the speech corpus (examples/voice_pipeline.sh): codec, semantic model,
# LMs and the reading LM, then continuations and speech of the test voices, judged by
# `aimusic eval voice` (voice/voice.json). Reruns reuse what is built.
voice-pipeline: install speech-corpus
	bash examples/voice_pipeline.sh

demo-deps:
	$(call apt_install,$(APT_PKGS_DEMO),the demo speaks nothing and says why)

# The bundled models continue a bundled recorded prompt by 20 s and speak a sentence:
# demo/report.html. Without espeak-ng the music half still runs.
demo: install demo-deps
	$(BIN)/aimusic demo -o demo

# The codec alone in a few minutes: train, round-trip a held-out piece, compare with Opus.
demo-codec: install system-deps
	bash examples/demo.sh

clean:
	rm -rf demo pipeline piano .pytest_cache .mypy_cache .ruff_cache
