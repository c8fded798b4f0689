# The front door. `make run` and `make test` do all set-up on a fresh Debian 12 machine as root.
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
CONFIG     ?= manager/corral.yaml

# ccache must hash precompiled headers by content, not by timestamp, to hit across clean clones.
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime

.PHONY: all deps configure build run test unit-test bench bench-smoke format clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

# The programs only; `make test` builds the test binaries too.
build: configure
	@cmake --build $(BUILD) -j $(JOBS) --target corrald corral-run corral-fake-lm

run: build
	$(BUILD)/corrald --config $(CONFIG)

test: configure
	@cmake --build $(BUILD) -j $(JOBS)
	@scripts/run-tests.sh $(BUILD)

bench: deps
	@cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build-release -j $(JOBS) --target corrald corral-run corral-bench-load
	@bench/run.sh build-release

bench-smoke: configure
	@cmake --build $(BUILD) -j $(JOBS) --target corrald corral-run corral-bench-load
	@BENCH_SMOKE=1 bench/run.sh $(BUILD)

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) build-release
