# The Makefile is the entry point (STYLE.md §11). `make test` is the whole gate that CI runs
# through .ci/run: Node modules for the SDK tests, lint, race tests, allocation tests, a short
# fuzz pass and the end-to-end tests against the official Azure Web PubSub SDKs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
BIN     := bin/webpubsub
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

SDK_DIR     := engine/testdata/sdk
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

# FUZZTIME is how long each fuzz target runs: 30s for `make fuzz`, 50000 executions for the short pass in
# `make test`, unless set on the command line or in the environment.
ifeq ($(origin FUZZTIME),undefined)
FUZZTIME_LONG  := 30s
# The short pass counts executions instead of seconds: go1.26's fuzz coordinator can report
# a spurious "context deadline exceeded" when a duration -fuzztime ends under CPU load
# (go.dev/issue/75804, fixed in Go 1.27), which would make the gate flaky.
FUZZTIME_SHORT := 50000x
else
FUZZTIME_LONG  := $(FUZZTIME)
FUZZTIME_SHORT := $(FUZZTIME)
endif

E2E_TIMEOUT ?= 15m
BASE        ?= main
BENCH       ?= .
BENCHCOUNT  ?= 10
ARGS        ?=

.PHONY: build run test check-node npm-deps lint lint-print race alloc fuzz fuzz-short e2e bench benchcmp clean

build:
	@echo ">> go build $(BIN) (version $(VERSION))"
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/webpubsub

run: build
	./$(BIN) serve $(ARGS)

# test is the whole gate. Steps run one after another, also under `make -j`.
test:
	@$(MAKE) --no-print-directory npm-deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory race
	@$(MAKE) --no-print-directory alloc
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory e2e
	@echo ">> make test: all steps passed"

# check-node fails, never skips, when Node.js or npm is missing: the SDK tests need them.
check-node:
	@command -v node >/dev/null 2>&1 || { echo "make: node not found. The end-to-end tests need Node.js 20+ and npm: apt-get install nodejs npm" >&2; exit 1; }
	@command -v npm >/dev/null 2>&1 || { echo "make: npm not found. The end-to-end tests need Node.js 20+ and npm: apt-get install nodejs npm" >&2; exit 1; }
	@major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then echo "make: node $$(node --version) is too old; need Node.js 20+ (apt-get install nodejs npm)" >&2; exit 1; fi

npm-deps: check-node
	@echo ">> npm ci in $(SDK_DIR) (official SDKs pinned by package-lock.json)"
	cd $(SDK_DIR) && npm ci --no-audit --no-fund

lint: lint-print
	@echo ">> gofmt -l"
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/node_modules/*'); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt needed on:" >&2; echo "$$bad" >&2; exit 1; fi
	@echo ">> go vet (with the e2e tag, so e2e tests are vetted too)"
	$(GO) vet -tags e2e ./...
	@echo ">> staticcheck $(STATICCHECK)"
	$(GO) run $(STATICCHECK) -tags e2e ./...
	@echo ">> go mod verify"
	$(GO) mod verify
	@echo ">> import directions (STYLE §1)"
	./.ci/check-imports.sh

# lint-print: only cmd/ and bench/ print to stdout (STYLE §7); tests and testdata are exempt.
lint-print:
	@echo ">> no fmt.Print* outside cmd/ and bench/"
	@hits=$$(grep -rnE --include='*.go' '\bfmt\.Print(f|ln)?\(' . \
		| grep -vE '^\./(cmd|bench)/|_test\.go:|/testdata/|/node_modules/|^\./\.git/' || true); \
	if [ -n "$$hits" ]; then echo "fmt.Print* outside cmd/ and bench/ (log with slog or return the text):" >&2; echo "$$hits" >&2; exit 1; fi

race:
	@echo ">> go test -race -shuffle=on ./..."
	$(GO) test -race -shuffle=on ./...
	@echo ">> go test -race ./... in bench/baseline (its own module)"
	cd bench/baseline && $(GO) vet ./... && $(GO) test -race -shuffle=on ./...

# alloc runs the allocation tests (files tagged !race, tests named *Alloc*) without -race.
alloc:
	@echo ">> allocation tests (no -race)"
	$(GO) test -run 'Alloc' -count=1 ./...

# run_fuzz runs every Fuzz target of every package for $(1). Targets are discovered with
# `go test -list`, so a new target is fuzzed without editing this file.
define run_fuzz
	@echo ">> fuzzing every Fuzz target for $(1) each"
	@n=0; pkgs=$$($(GO) list ./...); \
	for pkg in $$pkgs; do \
		names=$$($(GO) test -list '^Fuzz' -run '^$$' "$$pkg"); \
		names=$$(printf '%s\n' "$$names" | grep -E '^Fuzz' || true); \
		for f in $$names; do \
			echo ">> fuzz $$pkg $$f ($(1))"; \
			$(GO) test -run "^$$f\$$" -fuzz "^$$f\$$" -fuzztime $(1) "$$pkg"; \
			n=$$((n+1)); \
		done; \
	done; \
	echo ">> fuzzed $$n target(s)"
endef

fuzz:
	$(call run_fuzz,$(FUZZTIME_LONG))

fuzz-short:
	$(call run_fuzz,$(FUZZTIME_SHORT))

e2e: npm-deps
	@echo ">> end-to-end tests with the official SDKs (timeout $(E2E_TIMEOUT))"
	$(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./engine/ -run E2E

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./...

# benchcmp benchmarks BASE (a git revision, default main) and the working tree -count times
# each and compares them with benchstat. BASE is checked out into a temporary worktree.
benchcmp:
	@tmp=$$(mktemp -d); \
	trap 'git worktree remove --force "$$tmp/base" >/dev/null 2>&1 || true; rm -rf "$$tmp"' EXIT; \
	echo ">> git worktree of $(BASE) in $$tmp/base"; \
	git worktree add --detach "$$tmp/base" "$(BASE)" >/dev/null; \
	echo ">> benchmarks of $(BASE) (-count=$(BENCHCOUNT))"; \
	(cd "$$tmp/base" && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=$(BENCHCOUNT) ./...) > "$$tmp/old.txt"; \
	echo ">> benchmarks of the working tree (-count=$(BENCHCOUNT))"; \
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=$(BENCHCOUNT) ./... > "$$tmp/new.txt"; \
	echo ">> benchstat $(BASE) vs working tree"; \
	$(GO) run $(BENCHSTAT) "$(BASE)=$$tmp/old.txt" "head=$$tmp/new.txt"

clean:
	rm -rf bin/ $(SDK_DIR)/node_modules/
