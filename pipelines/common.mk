# Shared settings for the per-dataset pipelines (pipelines/<org>_<dataset>.mk).
# Tools come from this checkout's bin/ unless SFT_BIN points elsewhere.
SFT_BIN  ?= $(abspath $(BINDIR))
export PATH := $(SFT_BIN):$(PATH)
# Default tokenizer: SmolLM2-135M-Instruct's, shipped as a vocab fixture (no download).
# Point it at a model directory or GGUF (scripts/get-model) for real runs.
DEFAULT_MODEL ?= tests/fixtures/tokenizers/smollm2.gguf
SEED ?= 42
# Fail a pipeline when any stage fails, not just the last one.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
