# lomo - build, test, benchmark. `make test` is what CI runs.
CC      ?= cc
CXX     ?= c++
WARN     = -Wall -Wextra -pedantic
CFLAGS  ?= -O2 -g
CSTD     = -std=c11
OMP      = -fopenmp
LDLIBS   = -lm
BUILD    = build

# OpenBLAS (Debian: libopenblas-dev) is used when a test program links with it.
HAVE_CBLAS := $(shell printf '\043include <cblas.h>\nint main(void){float a=2,b=3,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.0f,&a,1,&b,1,0.0f,&c,1);return c!=6;}\n' | $(CC) -x c - -o /dev/null -lopenblas 2>/dev/null && echo 1)
ifeq ($(HAVE_CBLAS),1)
BLAS_FLAGS = -DLOMO_CBLAS
BLAS_LIBS  = -lopenblas
endif
# What the BLAS choice changes is rebuilt when it changes (OpenBLAS installed or removed, or
# `make HAVE_CBLAS=0`): the stamp is rewritten only when its content differs.
BLAS_STAMP := $(BUILD)/blas.flags
$(shell mkdir -p $(BUILD) && (echo '$(BLAS_FLAGS) $(BLAS_LIBS)' | cmp -s - $(BLAS_STAMP) || echo '$(BLAS_FLAGS) $(BLAS_LIBS)' > $(BLAS_STAMP)))

SAN      = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TESTS    = test_ops test_grad test_train test_io test_data test_hf test_ckpt test_precision test_micro test_rules
TESTS += test_state
$(BUILD)/test_state_loops $(BUILD)/test_state_cblas $(BUILD)/test_state_asan: examples/llama_ft.c
TESTS += test_cuda_tol
TESTS += test_tok
TESTS += test_threads
TESTS += test_gen
TESTS += test_chat
TESTS += test_layers
TESTS += test_alloc
TESTS += test_backend
TESTS += test_head
TESTS += test_fused
TESTS += test_flash_model
$(BUILD)/test_flash_model_loops $(BUILD)/test_flash_model_cblas $(BUILD)/test_flash_model_asan: tests/flash_model.h
TESTS += test_decode
TESTS += test_passcache
# shell tests run by tests/run.sh after the programs (one line each)
TEST_SCRIPTS += tests/test_options.sh
HEADERS  = lomo.h tests/test_util.h tests/ref_double.h tests/step_compare.h

# CUDA: compiled whenever nvcc is found (CI has the toolkit and no GPU, so the
# CUDA side is built in `make test` and cannot rot); run with `make test-cuda`.
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH  = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVFLAGS    = -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-fopenmp
CUDA_LIBS  = -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++ -lgomp
CUDA_BINS  = $(BUILD)/test_cuda $(BUILD)/llama_ft_cuda $(BUILD)/bench_cuda

# MPI (OpenMPI from Debian: openmpi-bin libopenmpi-dev): sharding tests under mpirun
MPICC     ?= $(shell command -v mpicc 2>/dev/null)
MPI_BINS   = $(if $(MPICC),$(BUILD)/test_mpi $(BUILD)/llama_ft_mpi)

.PHONY: all test test-noblas demo bench bench-tok clean cuda test-cuda bench-cuda gpu-check fuzz fuzz-corpus
all: $(BUILD)/llama_ft $(BUILD)/bench_cpu

$(BUILD):
	mkdir -p $(BUILD)

# three builds of every test: CBLAS matmuls, plain OpenMP loops, ASan+UBSan (serial)
$(BUILD)/%_cblas: tests/%.c $(HEADERS) $(BLAS_STAMP) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)
$(BUILD)/%_loops: tests/%.c $(HEADERS) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(OMP) $< -o $@ $(LDLIBS)
$(BUILD)/%_asan: tests/%.c $(HEADERS) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(SAN) $< -o $@ $(LDLIBS)

# lomo.h must also compile as C++, warnings clean
$(BUILD)/cxx_check.o: tests/cxx_check.cpp $(HEADERS) | $(BUILD)
	$(CXX) -std=c++11 $(WARN) -Werror $(OMP) -c $< -o $@

TEST_BINS = $(foreach t,$(TESTS),$(BUILD)/$(t)_loops $(BUILD)/$(t)_asan) \
            $(if $(BLAS_FLAGS),$(foreach t,$(TESTS),$(BUILD)/$(t)_cblas))

$(BUILD)/llama_ft_asan: examples/llama_ft.c lomo.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(SAN) $< -o $@ $(LDLIBS)

$(BUILD)/cuda_impl.o: examples/cuda_impl.cu lomo.h lomo_cuda.cuh | $(BUILD)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/test_cuda: tests/test_cuda.cu lomo.h lomo_cuda.cuh tests/test_util.h tests/step_compare.h | $(BUILD)
	$(NVCC) $(NVFLAGS) $< -o $@ -lcublas -lgomp
# test_cuda.cu's own logic on the CPU (the CPU backend posing as the GPU; run by gpu-check)
$(BUILD)/test_cuda_dry: tests/test_cuda.cu tests/cuda_dry.h lomo.h tests/test_util.h tests/step_compare.h | $(BUILD)
	$(CXX) -x c++ -std=c++17 -O2 $(OMP) -DLOMO_CUDA_DRY $< -o $@ $(LDLIBS)
# the same tests + NCCL at world size 1 (test_cuda_nccl --nccl): built where NCCL is
$(BUILD)/test_cuda_nccl: tests/test_cuda.cu lomo.h lomo_cuda.cuh tests/test_util.h tests/step_compare.h | $(BUILD)
	$(NVCC) $(NVFLAGS) -DLOMO_NCCL $< -o $@ -lcublas -lnccl -lgomp
$(BUILD)/llama_ft_cuda: examples/llama_ft.c $(BUILD)/cuda_impl.o
	$(CC) $(CSTD) $(WARN) -O2 $(OMP) -DLOMO_CUDA $< $(BUILD)/cuda_impl.o -o $@ $(CUDA_LIBS) $(LDLIBS)
$(BUILD)/bench_cuda: bench/bench_lomo.c $(BUILD)/cuda_impl.o
	$(CC) $(CSTD) $(WARN) -O2 $(OMP) -DLOMO_CUDA -I$(CUDA_HOME)/include $< $(BUILD)/cuda_impl.o -o $@ $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/test_mpi: tests/test_mpi.c lomo.h tests/test_util.h | $(BUILD)
	$(MPICC) $(CSTD) $(WARN) $(CFLAGS) $(OMP) -DLOMO_MPI $< -o $@ $(LDLIBS)
$(BUILD)/llama_ft_mpi: examples/llama_ft.c lomo.h $(BLAS_STAMP) | $(BUILD)
	$(MPICC) $(CSTD) $(WARN) -O3 $(OMP) $(BLAS_FLAGS) -DLOMO_MPI $< -o $@ $(BLAS_LIBS) $(LDLIBS)

# NCCL sharding (LOMO_NCCL, bootstrapped over MPI): built when nvcc and mpicc are both here
MPI_CFLAGS = $(if $(MPICC),$(shell $(MPICC) --showme:compile 2>/dev/null))
MPI_LIBS   = $(if $(MPICC),$(shell $(MPICC) --showme:link 2>/dev/null))
NCCL_BINS  = $(if $(and $(NVCC),$(MPICC)),$(BUILD)/llama_ft_nccl)
$(BUILD)/cuda_impl_nccl.o: examples/cuda_impl.cu lomo.h lomo_cuda.cuh | $(BUILD)
	$(NVCC) $(NVFLAGS) -DLOMO_NCCL -DLOMO_MPI $(MPI_CFLAGS) -c $< -o $@
$(BUILD)/llama_ft_nccl: examples/llama_ft.c $(BUILD)/cuda_impl_nccl.o
	$(MPICC) $(CSTD) $(WARN) -O2 $(OMP) -DLOMO_CUDA -DLOMO_NCCL -DLOMO_MPI -I$(CUDA_HOME)/include $< $(BUILD)/cuda_impl_nccl.o \
	    -o $@ $(CUDA_LIBS) -lnccl $(LDLIBS)

cuda: $(CUDA_BINS) $(NCCL_BINS)

# on a GPU: every kernel against the CPU backend, whole steps, trajectories;
# then compute-sanitizer (memcheck, racecheck) on a small training run
test-cuda: $(CUDA_BINS)
	$(BUILD)/test_cuda
	$(CUDA_HOME)/bin/compute-sanitizer --tool memcheck --error-exitcode 1 $(BUILD)/llama_ft_cuda --device cuda --dtype bf16 --clip-norm 1.0 --steps 2 --out $(BUILD)/san_out
	$(CUDA_HOME)/bin/compute-sanitizer --tool racecheck --error-exitcode 1 $(BUILD)/llama_ft_cuda --device cuda --dtype bf16 --steps 1 --out $(BUILD)/san_out

bench-cuda: $(CUDA_BINS)
	sh bench/run_cuda.sh

# the one command of a session with a lent GPU (and of CI, which has none: then the
# build, the CPU parts and the compile-only mutation check run, the rest says SKIPPED)
gpu-check:
	sh tests/gpu_check.sh

test: $(TEST_BINS) $(BUILD)/cxx_check.o $(BUILD)/llama_ft $(BUILD)/llama_ft_asan $(if $(NVCC),$(CUDA_BINS)) $(MPI_BINS) $(NCCL_BINS)
	@echo "CUDA side: $(if $(NVCC),compiled with $(NVCC) for sm_80 and sm_90 (run on a GPU: make test-cuda),not built (no nvcc))$(if $(NCCL_BINS), + NCCL sharding (build/llama_ft_nccl))"
	@echo "matmuls: $(if $(BLAS_FLAGS),CBLAS (OpenBLAS) and plain loops,plain loops only (no OpenBLAS found))"
	@echo "MPI sharding: $(if $(MPICC),tested under mpirun -np 2 and 3,not built (no mpicc: apt-get install openmpi-bin libopenmpi-dev))"
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} sh tests/run.sh $(TEST_BINS) tests/test_example.sh $(TEST_SCRIPTS) $(if $(MPICC),tests/test_mpi.sh)

# OpenBLAS is optional: the one program whose build depends on it (llama_ft, which
# tests/test_example.sh drives) built without it into $(BUILD)/noblas and tested
# there (every test program's _loops and _asan builds never use BLAS). CI runs it.
test-noblas:
	$(MAKE) HAVE_CBLAS=0 BUILD=$(BUILD)/noblas $(BUILD)/noblas/llama_ft $(BUILD)/noblas/llama_ft_asan
	@echo "matmuls: plain loops (OpenBLAS hidden: HAVE_CBLAS=0)"
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} LLAMA_FT=$(BUILD)/noblas/llama_ft LLAMA_FT_ASAN=$(BUILD)/noblas/llama_ft_asan \
	    sh tests/run.sh tests/test_example.sh

$(BUILD)/bench_cpu: bench/bench_lomo.c lomo.h $(BLAS_STAMP) | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)

# tokenizer throughput against the tokenizers library (needs the venv: bench/bench_tok.py)
$(BUILD)/bench_tok: bench/bench_tok.c lomo.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $< -o $@ $(LDLIBS)
bench-tok: $(BUILD)/bench_tok
	python3 bench/bench_tok.py
$(BUILD)/bench_gen: bench/bench_gen.c lomo.h $(BLAS_STAMP) | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)

$(BUILD)/llama_ft: examples/llama_ft.c lomo.h $(BLAS_STAMP) | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)

# the built-in default: fine-tune a small Llama on a synthetic task, save a HF checkpoint
demo: $(BUILD)/llama_ft
	$(BUILD)/llama_ft --out demo_out

# lomo vs PyTorch + lomo-optim on the same model, batch and sequence (needs a
# venv with torch, transformers, lomo-optim: see bench/README.md)
bench: $(BUILD)/bench_cpu
	sh bench/run_cpu.sh

# libFuzzer harnesses for every reader (clang + libclang-rt-14-dev): `make fuzz`
# runs each for FUZZ_SECONDS on a scratch copy of tests/fuzz/corpus/<name> and
# fails on any crash. Adding a harness: tests/fuzz/fuzz_xxx.c, one line here.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZERS += fuzz_json
FUZZERS += fuzz_st_header
FUZZERS += fuzz_safetensors
FUZZERS += fuzz_config
FUZZERS += fuzz_index
FUZZERS += fuzz_jsonl
FUZZERS += fuzz_mc
FUZZERS += fuzz_packed
FUZZERS += fuzz_trainer
FUZZERS += fuzz_tokenizer
FUZZERS += fuzz_textdata
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_util.h lomo.h examples/llama_ft.c
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) -std=c11 $(FUZZ_FLAGS) $< -o $@ -lm
fuzz: $(foreach f,$(FUZZERS),$(BUILD)/fuzz/$(f))
	sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)
# rewrite the committed seed corpora (after a format change)
fuzz-corpus: | $(BUILD)
	$(CC) $(CSTD) -O1 tests/fuzz/make_corpus.c -o $(BUILD)/make_corpus -lm && $(BUILD)/make_corpus

clean:
	rm -rf $(BUILD) demo_out demo_out.*
