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

SAN      = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TESTS    = test_ops test_grad test_train test_io test_data test_hf test_ckpt test_precision test_micro test_rules
HEADERS  = lomo.h tests/test_util.h tests/ref_double.h

.PHONY: all test demo bench clean
all: $(BUILD)/llama_ft $(BUILD)/bench_cpu

$(BUILD):
	mkdir -p $(BUILD)

# three builds of every test: CBLAS matmuls, plain OpenMP loops, ASan+UBSan (serial)
$(BUILD)/%_cblas: tests/%.c $(HEADERS) | $(BUILD)
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

test: $(TEST_BINS) $(BUILD)/cxx_check.o $(BUILD)/llama_ft $(BUILD)/llama_ft_asan
	@echo "matmuls: $(if $(BLAS_FLAGS),CBLAS (OpenBLAS) and plain loops,plain loops only (no OpenBLAS found))"
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} sh tests/run.sh $(TEST_BINS) tests/test_example.sh

$(BUILD)/bench_cpu: bench/bench_cpu.c lomo.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)

$(BUILD)/llama_ft: examples/llama_ft.c lomo.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) -O3 -march=native $(OMP) $(BLAS_FLAGS) $< -o $@ $(BLAS_LIBS) $(LDLIBS)

# the built-in default: fine-tune a small Llama on a synthetic task, save a HF checkpoint
demo: $(BUILD)/llama_ft
	$(BUILD)/llama_ft --out demo_out

# lomo vs PyTorch + lomo-optim on the same model, batch and sequence (needs a
# venv with torch, transformers, lomo-optim: see bench/README.md)
bench: $(BUILD)/bench_cpu
	sh bench/run_cpu.sh

clean:
	rm -rf $(BUILD) demo_out demo_out.*
