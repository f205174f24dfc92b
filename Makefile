# cellcube: the two commands a user needs are `make demo` and `make test`.
# Every target installs missing Debian packages first (scripts/install-deps.sh).

BUILD_DIR   ?= build
ASAN_DIR    ?= build-asan
PYTHON      ?= /usr/bin/python3
JOBS        ?= $(shell nproc)
DEMO_PORT   ?= 8080

.PHONY: all deps build test test-cpp test-python test-asan demo bench format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	CELLCUBE_BUILD=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest tests/python -q

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCELLCUBE_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS)
	CELLCUBE_BUILD=$(abspath $(ASAN_DIR)) $(PYTHON) -m pytest tests/python -q

# Synthesises an atlas, builds its store and serves it (see `cellcube demo --help`).
demo: build
	./$(BUILD_DIR)/cellcube demo --port $(DEMO_PORT)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
