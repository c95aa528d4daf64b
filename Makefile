# careflow. Everything here works from a clean clone with only Go installed;
# the PostgreSQL half of the tests runs when CAREFLOW_TEST_POSTGRES is set.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        ?= ./...
BENCHTIME   ?= 5s
FUZZTIME    ?= 30s

.PHONY: run build test lint bench fuzz soak clean

run: ## build careflow (printing each package it compiles), then serve on the embedded SQLite default
	@echo "make run: building bin/careflow; with an empty Go build cache the first build compiles every dependency and takes minutes"
	$(GO) build -v -o bin/careflow ./cmd/careflow
	./bin/careflow serve

build:
	$(GO) build -o bin/careflow ./cmd/careflow
	$(GO) build -o bin/loadgen ./cmd/loadgen

# The race detector instruments every package but the embedded SQLite engine
# itself, C translated to Go (modernc.org/sqlite/lib): instrumenting it and
# checking its pointer arithmetic made every SQLite test four times slower
# without watching any code of ours. Its libc (whose locks and atomics the
# detector must see, or it reports races that are not) stays instrumented,
# without the pointer checks. Our side of every call into SQLite still is.
RACEFLAGS   ?= -race -gcflags='modernc.org/sqlite/lib=-d=checkptr=0 -race=false' -gcflags='modernc.org/libc/...=-d=checkptr=0'

test: ## all tests with the race detector (aim: under 10 minutes on 2 cores)
	$(GO) test $(RACEFLAGS) -count=1 -timeout 15m $(PKGS)

lint: ## gofmt, go vet, staticcheck
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	@# The embedded R4 table must match a regeneration from the pinned
	@# definitions; that check is too slow under -race, so it runs here.
	$(GO) test -count=1 ./internal/fhir/internal/gen/

bench: build ## Go benchmarks on both backends, then the HTTP load harnesses on each (the clinical one seeds 100,000 workflows per backend: about an hour each on 2 cores)
	CAREFLOW_TEST_POSTGRES="$${CAREFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}" \
		$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 $(PKGS)
	BACKEND=sqlite ./scripts/bench-security.sh
	BACKEND=postgres ./scripts/bench-security.sh
	BACKEND=sqlite ./scripts/bench-writepath.sh
	BACKEND=postgres ./scripts/bench-writepath.sh
	BACKEND=sqlite ./scripts/bench-idle.sh
	BACKEND=postgres ./scripts/bench-idle.sh
	BACKEND=sqlite ./scripts/bench-clinical.sh
	BACKEND=postgres ./scripts/bench-clinical.sh

fuzz: ## each Fuzz target for FUZZTIME
	./scripts/fuzz.sh $(FUZZTIME)

soak: ## the long-running tests at full size
	CAREFLOW_SOAK=1 $(GO) test -count=1 -timeout 150m $(PKGS)

clean:
	rm -rf bin
