# cellcube: the two commands a user needs are `make demo` and `make test`.
# Every target first installs the missing Debian packages its purpose needs
# (scripts/install-deps.sh build|test|bench|fuzz|format).

BUILD_DIR   ?= build
ASAN_DIR    ?= build-asan
FUZZ_DIR    ?= build-fuzz
FUZZ_SECONDS ?= 60
PYTHON      ?= /usr/bin/python3
JOBS        ?= $(shell nproc)
DEMO_PORT   ?= 8080
ATLAS_ARGS  ?=

.PHONY: all deps deps-build deps-test deps-bench deps-fuzz deps-format web build test test-e2e \
        test-asan fuzz demo bench bench-atlas format clean

all: build

# Each purpose's packages include the build's; the chain installs those first, so
# under `make -j` no two apt-get runs overlap.
deps: deps-bench deps-fuzz deps-format
deps-build:
	@bash scripts/install-deps.sh build
deps-test: deps-build
	@bash scripts/install-deps.sh test
deps-bench: deps-test
	@bash scripts/install-deps.sh bench
deps-fuzz: deps-build
	@bash scripts/install-deps.sh fuzz
deps-format:
	@bash scripts/install-deps.sh format

$(BUILD_DIR)/build.ninja: | deps-build
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

# The web page: npm ci when web/node_modules is missing or older than the lockfile, then
# the esbuild bundle into web/dist, which the C++ build embeds into the binary.
web: deps-build
	@if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	  cd web && npm ci --no-audit --no-fund; fi
	cd web && npm run --silent build

build: deps-build web $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps-test build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	CELLCUBE_BUILD=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest tests/python -q
	$(MAKE) --no-print-directory test-e2e

# The page's logic (web/test), then the page in a real browser (Debian chromium driven by
# playwright-core) against `cellcube serve` on a small synthetic store (tests/e2e/).
test-e2e: deps-test build
	cd web && node --test test/
	@if [ ! -f tests/e2e/node_modules/.package-lock.json ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then \
	  cd tests/e2e && npm ci --no-audit --no-fund; fi
	CELLCUBE_BIN=$(abspath $(BUILD_DIR))/cellcube CELLCUBE_E2E_REAL=1 node --test --test-concurrency=1 tests/e2e/page.test.mjs

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps-test web
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCELLCUBE_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS)
	CELLCUBE_BUILD=$(abspath $(ASAN_DIR)) $(PYTHON) -m pytest tests/python -q \
	  --ignore=tests/python/test_python_module.py
	# The instrumented module needs the ASan runtime loaded first into Debian's python.
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	  CELLCUBE_BUILD=$(abspath $(ASAN_DIR)) $(PYTHON) -m pytest tests/python/test_python_module.py -q

# libFuzzer (clang-14, ASan + UBSan): the h5ad reader, the store reader + query engine and
# the HTTP API handler, FUZZ_SECONDS each (fuzz/run.sh; docs/RELIABILITY.md).
fuzz: deps-fuzz web
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCELLCUBE_FUZZ=ON -DCELLCUBE_TESTS=OFF -DCELLCUBE_WERROR=OFF
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target h5ad_fuzz store_fuzz http_fuzz cellcube
	FUZZ_DIR=$(abspath $(FUZZ_DIR)) FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# Synthesises an atlas, builds its store and serves it (see `cellcube demo --help`).
demo: build
	./$(BUILD_DIR)/cellcube demo --port $(DEMO_PORT)

# Benchmarks (never run by the tests); each prints a Markdown section for
# docs/BENCHMARKS.md.
bench: deps-bench build
	CELLCUBE_BUILD=$(abspath $(BUILD_DIR)) $(PYTHON) bench/compare_seed.py --out $(BUILD_DIR)/bench-query.md
	$(PYTHON) bench/build_bench.py --out $(BUILD_DIR)/bench-build.md
	$(PYTHON) bench/serve_bench.py --out $(BUILD_DIR)/bench-serve.md

# The atlas-scale benchmark (300 datasets, 1.5 M cells, 20,000 genes: tens of minutes and
# GBs of disk; ATLAS_ARGS=--quick for a smoke run, --keep-inputs to reuse the inputs).
bench-atlas: deps-bench build
	CELLCUBE_BUILD=$(abspath $(BUILD_DIR)) CELLCUBE_BIN=$(abspath $(BUILD_DIR))/cellcube \
	  $(PYTHON) bench/atlas_bench.py $(ATLAS_ARGS) --out $(BUILD_DIR)/bench-atlas.md

format: deps-format
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
