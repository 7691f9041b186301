# The one task runner. A newcomer needs two targets: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Honour a persistent CARGO_TARGET_DIR when one is set; default to ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: run test check fmt clippy bench docs build-release build-debug deps-run deps-test

deps-run:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

build-release: deps-run
	$(CARGO) build --release -p kopa
	scripts/build-ui.sh

build-debug:
	$(CARGO) build -p kopa
	scripts/build-ui.sh

## Start Kopa with the embedded default configuration (data in ./data, https://127.0.0.1:8443),
## with the portal's demo data on the first start.
run: build-release
	$(TARGET_DIR)/release/kopa demo seed --if-empty $(SEED_ARGS)
	$(TARGET_DIR)/release/kopa serve $(ARGS)

## Install what the tests need and run the whole suite.
test: deps-test build-debug
	KOPA_BIN=$(TARGET_DIR)/debug/kopa scripts/run-tests.sh

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt, clippy -D warnings and the tests.
check: fmt clippy test

## Regenerate generated documents (docs/config.md, docs/openapi.json).
docs:
	KOPA_BLESS=1 $(CARGO) test -q -p kopa-config reference_doc_is_current
	KOPA_BLESS=1 $(CARGO) test -q -p kopa-portal-server openapi_document_is_current

## Measure and write BENCHMARKS.md.
bench: deps-test build-release
	$(CARGO) build --release -p kopa-tests --bin kopa-bench
	$(CARGO) build --release -p kopa-store --example audit_bench
	$(CARGO) build --release -p kopa-portal-server --example portal_bench
	$(CARGO) build --release -p kopa-monitor --example monitor_bench
	python3 scripts/bench.py --kopa $(TARGET_DIR)/release/kopa \
	  --kopa-bench $(TARGET_DIR)/release/kopa-bench \
	  --audit-bench $(TARGET_DIR)/release/examples/audit_bench \
	  --portal-bench $(TARGET_DIR)/release/examples/portal_bench \
	  --monitor-bench $(TARGET_DIR)/release/examples/monitor_bench --out BENCHMARKS.md
