# Thin wrapper over CMake: the two commands a newcomer needs.
#   make test   install missing packages (as root), build, run every test through ctest
#   make bench  install missing packages (as root), build Release, run the main benchmark
BUILD       ?= build
BENCH_BUILD ?= build-release
JOBS        ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test bench bench-build format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(BENCH_BUILD)/CMakeCache.txt:
	cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DAURA_BUILD_TESTS=OFF $(CMAKE_FLAGS)

bench-build:
	@./scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory $(BENCH_BUILD)/CMakeCache.txt
	cmake --build $(BENCH_BUILD) -j $(JOBS)

bench: bench-build
	./bench/default.sh $(BENCH_BUILD)

format:
	git ls-files '*.c' '*.h' '*.hpp' '*.cpp' | xargs clang-format -i

format-check:
	git ls-files '*.c' '*.h' '*.hpp' '*.cpp' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(BENCH_BUILD)
