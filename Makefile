# Thin wrapper over CMake/CTest: the two set-up commands of the README.
#   make run    install missing packages, build, start labhost on ./host.json (foreground)
#   make test   install missing packages, build, run every test: the CTest suite, then the
#               same suite under AddressSanitizer+UBSan, the concurrency tests under
#               ThreadSanitizer, and each fuzz target for FUZZ_SECONDS
#   make check  the CTest suite only (quick, while developing)
BUILD_DIR ?= build
CONFIG ?= host.json
# Warnings are errors in CI (CI=true in its environment), warnings elsewhere.
WERROR ?= $(if $(CI),ON,OFF)
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20

PREFIX ?= /usr/local

.PHONY: all deps configure build run check test bench install deb clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DLABHOST_WERROR=$(WERROR) > /dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/labhost up --config $(CONFIG)

check: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

test: check
	scripts/sanitizer-tests asan
	scripts/sanitizer-tests tsan
	tests/fuzz/run $(FUZZ_SECONDS)

bench: build
	$(BUILD_DIR)/bin/labhost-bench

# Install binaries, SDK headers, plugins, host.json (etc), systemd unit and CMake package.
install: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DLABHOST_WERROR=$(WERROR) -DCMAKE_INSTALL_PREFIX=$(PREFIX) > /dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)
	cmake --install $(BUILD_DIR)

# A .deb for /usr, built in its own folder so that its paths are the installed ones.
deb: deps
	@cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
	  -DLABHOST_BUILD_TESTS=OFF -DLABHOST_PLUGIN_DIR=$(CURDIR)/build-deb/plugins > /dev/null
	@cmake --build build-deb -j $(JOBS)
	cd build-deb && cpack
	@ls build-deb/*.deb

clean:
	rm -rf $(BUILD_DIR) build-deb build-asan build-tsan build-fuzz
	find plugins -name '*.so' -delete
