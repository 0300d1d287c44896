# keyceremony: the two commands that matter are `make demo` and `make test`.
GO      ?= go
BIN     := bin
export CGO_ENABLED := 1

.PHONY: all build deps test demo bench bench-kms lint clean crash release release-check fuzz

all: build

build:
	$(GO) build -o $(BIN)/keyceremony ./cmd/keyceremony
	$(GO) build -o $(BIN)/kmslocal ./cmd/kmslocal

# Reproducible release binaries in dist/ with dist/SHA256SUMS (README,
# "Bringing keyceremony into the room"). Needs a clean git clone.
release:
	@bash scripts/release.sh

# The reproducibility test with an empty build cache for the second clone.
release-check:
	KEYCEREMONY_RELEASE_FRESH_CACHE=1 $(GO) test -count=1 -run TestReleaseReproducible -v ./cmd/keyceremony

deps:
	@bash scripts/deps.sh

# Every test, SoftHSM ones included (they fail under CI=true when SoftHSM is missing).
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

# Crash tests: the boundary sweeps of a 3-key kms.parallel 1 ceremony and a
# 6-key kms.parallel 3 one (every transcript line, torn or complete, before
# and after every KMS request; make test tries a sample), upload's kill
# points, plus CRASH_RANDOM (default 200) ceremonies of each shape killed
# with SIGKILL at random moments, every other one killed again while
# resuming. CRASH_SEED=N repeats a run, CRASH_ONLY='torn seal line' tries
# the points named, CRASH_SHARD=i/n a share of them.
CRASH_RANDOM ?= 200
crash: deps
	CRASH_SWEEP=1 CRASH_RANDOM=$(CRASH_RANDOM) $(GO) test -count=1 -timeout 120m -v -run 'TestCrash' ./cmd/keyceremony

# A complete ceremony on a throw-away SoftHSM token and the loopback KMS.
# DEMO_DIR=path keeps the evidence there (default: a new temp dir).
demo: deps build
	@bash scripts/demo.sh

# Every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m for a campaign;
# FUZZ=regexp picks targets). `make test` runs every seed corpus.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 100x
fuzz:
	@FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) GO=$(GO) bash scripts/fuzz.sh

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./... | tee bench.txt | grep -E '^(Benchmark|ok|PASS|FAIL)'

# keyceremony vs AWS's documented CLI flow against one kmslocal with 20 ms
# latency: make bench-kms N=1000 [CLI_N=30] [LATENCY=20ms] [PARALLEL=32] [TOKEN_PARALLEL=8] [TOKEN_DIR=/dev/shm]
bench-kms: build
	@N=$(N) CLI_N=$(CLI_N) LATENCY=$(LATENCY) PARALLEL=$(PARALLEL) TOKEN_PARALLEL=$(TOKEN_PARALLEL) TOKEN_DIR=$(TOKEN_DIR) bash scripts/bench-kms.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf $(BIN) dist
