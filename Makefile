# Thin wrapper over CMake/CTest: the two set-up commands of the README.
#   make run    install missing packages, build, start labhost on ./host.json (foreground)
#   make test   install missing packages, build, run every test through CTest
BUILD_DIR ?= build
CONFIG ?= host.json
# Warnings are errors in CI (CI=true in its environment), warnings elsewhere.
WERROR ?= $(if $(CI),ON,OFF)
JOBS ?= $(shell nproc)

.PHONY: all deps configure build run test bench clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DLABHOST_WERROR=$(WERROR) > /dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/labhost up --config $(CONFIG)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

bench: build
	$(BUILD_DIR)/bin/labhost-bench

clean:
	rm -rf $(BUILD_DIR)
	find plugins -name '*.so' -delete
