# SPIKE developer tasks. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

BIN := $(CURDIR)/bin
TOOLS_BIN := $(BIN)/tools
SPIKE_STATE ?= $(CURDIR)/.spike
# How long `make fuzz` runs each fuzz target: a number of executions (4-11 s
# each on 2 cores), not a duration. With a duration, Go 1.26's fuzzing
# coordinator can fail a target with a bare "context deadline exceeded" as
# the time runs out (golang/go#75804, fixed in Go 1.27), which would make
# `make test` flaky.
FUZZTIME ?= 300000x
# The commit `buf breaking` compares proto/ with; empty means HEAD~1, or
# HEAD while proto/ has uncommitted changes (.ci/check-breaking).
BREAKING_AGAINST ?=

# Go modules of the workspace (go.work); tools/ is separate (GOWORK=off).
MODULES := keeper nexus pilot proto shared e2e deploy/compose/check deploy/helm/check
PKGS := $(foreach m,$(MODULES),./$(m)/...)

# PostgreSQL 15 as Debian/Ubuntu install it (check-deps.sh may install it
# while make runs). Appended, so a PostgreSQL already on PATH wins.
PG_BINDIR := /usr/lib/postgresql/15/bin
export PATH := $(PATH):$(PG_BINDIR)

.PHONY: help build test fuzz up svid down psql bench bench-pair bench-scale bench-backup proto tools lint clean spire test-spire

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build spike-keeper, spike-nexus, spike, spike-devca and spike-example-workload into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/ \
		./keeper/cmd/spike-keeper ./nexus/cmd/spike-nexus ./pilot/cmd/spike ./shared/cmd/spike-devca
	$(GO) build -trimpath -o $(BIN)/spike-example-workload ./shared/examples/workload

# -race needs cgo, so a C compiler (gcc); fuzz and test-spire run without it.
# A race test binary sleeps 1 s at exit by default (GORACE atexit_sleep_ms)
# for late race reports; our tests wait for their goroutines, so 100 ms
# does, and saves about 13 s a run.
test: ## check/install PostgreSQL and pgbouncer, run every Go test of the workspace with -race, fuzz, then the SPIRE end-to-end test
	deploy/local/check-deps.sh
	@[[ $$($(GO) env CGO_ENABLED) == 1 ]] || { echo "go test -race needs cgo: install gcc (apt-get install gcc)" >&2; exit 1; }
	GORACE=atexit_sleep_ms=100 $(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory test-spire

# -fuzz matches one target per package run, hence one invocation per target.
fuzz: ## run each fuzz target FUZZTIME (default 300000x executions; make fuzz FUZZTIME=5000000x)
	$(GO) test -run='^$$' -fuzz='^FuzzValidatePath$$' -fuzztime=$(FUZZTIME) ./nexus/internal/secret
	$(GO) test -run='^$$' -fuzz='^FuzzValidatePrefix$$' -fuzztime=$(FUZZTIME) ./nexus/internal/secret
	$(GO) test -run='^$$' -fuzz='^FuzzOpen$$' -fuzztime=$(FUZZTIME) ./nexus/internal/envelope
	$(GO) test -run='^$$' -fuzz='^FuzzSealOpen$$' -fuzztime=$(FUZZTIME) ./nexus/internal/envelope
	$(GO) test -run='^$$' -fuzz='^FuzzMatch$$' -fuzztime=$(FUZZTIME) ./nexus/internal/policy
	$(GO) test -run='^$$' -fuzz='^FuzzMayMatchUnder$$' -fuzztime=$(FUZZTIME) ./nexus/internal/policy

up: ## start PostgreSQL, Keeper and Nexus locally (state in .spike/); PG=ha: PostgreSQL under Patroni + etcd (docs/ha.md)
	deploy/local/up.sh

svid: ## mint a dev SVID for a workload: make svid ID=spiffe://spike.local/app/web [NAME=web]
	@GO="$(GO)" deploy/local/svid.sh "$(ID)" $(if $(filter command line,$(origin NAME)),"$(NAME)")

down: ## stop the local stack, Patroni and etcd included (state stays in .spike/)
	deploy/local/down.sh

psql: ## open psql on the local stack's database
	@test -f "$(SPIKE_STATE)/env" || { echo "no $(SPIKE_STATE)/env: run 'make up' first" >&2; exit 1; }
	@. "$(SPIKE_STATE)/env" && exec psql "$$SPIKE_DATABASE_URL"

# Not part of `make test`: it takes minutes and its figures depend on the machine.
bench: ## measure get/put on a fresh stack of its own vs raw PostgreSQL; writes docs/benchmarks.md
	GO="$(GO)" deploy/local/bench.sh

# Not part of `make test` either: two stacks, this tree and BASE=REV, measured
# in turn (PAIR_ROUNDS, default 6; about 2 minutes a round).
bench-pair: ## paired put/get runs of this tree against BASE=REV (both stacks up at once), ratios per round
	GO="$(GO)" BASE="$(BASE)" deploy/local/bench-pair.sh

# Not part of `make test` either: the default sizes write over a million
# secrets through Nexus (about 20 minutes on two cores); BENCH_SCALE_SIZES=... for less.
bench-scale: ## cost of get/put/list as secrets (10k-1M) and policies (1k-10k) grow, Nexus RSS; writes docs/benchmarks-scale.md
	GO="$(GO)" deploy/local/bench-scale.sh

# Not part of `make test` either (build tag benchbackup): minutes to populate.
BENCH_SECRETS ?= 100000
bench-backup: ## backup, verify and restore throughput and size for BENCH_SECRETS secrets x 3 versions; writes docs/benchmarks-backup.md
	deploy/local/check-deps.sh
	BENCH_SECRETS=$(BENCH_SECRETS) BENCH_OUT=$(CURDIR)/docs/benchmarks-backup.md \
		$(GO) test -tags benchbackup -count=1 -timeout 3h -run '^TestBenchBackup$$' -v ./e2e/

# The pinned SPIRE (tools/spire/go.mod) outside the workspace. The first
# build takes several minutes; later ones come from the Go build cache.
SPIRE_PKGS := github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent

spire: ## build the pinned SPIRE server and agent (v1.13.3) into bin/spire/
	@mkdir -p $(BIN)/spire
	@[ -x $(BIN)/spire/spire-server ] || echo "make spire: building SPIRE v1.13.3 (server and agent) from source; the first build takes 5-10 minutes, later ones seconds" >&2
	cd tools/spire && GOWORK=off $(GO) build -o $(BIN)/spire/ $(SPIRE_PKGS)

# Last step of `make test`. The first SPIRE build takes minutes (then it
# comes from the Go build cache); a failed build fails the target.
test-spire: spire ## end-to-end test under a real SPIRE server and agent, with SVIDs rotating
	deploy/local/check-deps.sh
	$(GO) test -tags spire -count=1 -timeout 30m ./e2e/spire/

tools: ## build the pinned buf, code generators and golangci-lint into bin/tools/
	@mkdir -p $(TOOLS_BIN)
	cd tools && GOWORK=off $(GO) build -o $(TOOLS_BIN)/ tool

proto: tools ## lint the .proto files and regenerate the Go code
	cd proto && export PATH="$(TOOLS_BIN):$$PATH" && buf lint && buf generate

# The README's Development section lists the same checks. Cheap ones first.
# -tags spire takes in e2e/spire, which only `make test-spire` builds.
lint: tools ## gofmt, file sizes, generated code, buf lint and breaking, go vet, golangci-lint
	@out=$$(gofmt -l $(MODULES) tools); \
	if [[ -n $$out ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	.ci/check-size
	PATH="$(TOOLS_BIN):$$PATH" .ci/check-generated
	cd proto && PATH="$(TOOLS_BIN):$$PATH" buf lint
	PATH="$(TOOLS_BIN):$$PATH" BREAKING_AGAINST="$(BREAKING_AGAINST)" .ci/check-breaking
	$(GO) vet -tags spire $(PKGS)
	$(TOOLS_BIN)/golangci-lint run $(PKGS)

clean: ## remove bin/ (the stack's state in .spike/ is kept)
	rm -rf $(BIN)
