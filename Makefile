# woodpecker — build, test and benchmark.
#
#   make run        a 3-node replicated KV store on local directories (ENGINE=etcd for etcd raft)
#   make test       everything, with -race, against real servers the tests start themselves
#   make test-long  the heavy version a release runs (more rapid checks)
#   make bench      raw object-store limits and hot-path benchmarks (go test -bench)
#   make bench-report  the benchmark command's report: BENCHMARKS.md tables and charts
#   make lint       gofmt + go vet
#   make clean      remove build caches and demo data

GO        ?= go
CACHE     := $(CURDIR)/.cache
VERSITYGW := $(CACHE)/bin/versitygw
VERSITYGW_VERSION := v1.8.0

# The S3 test server is built once into the cache directory; tests find it here.
export WOODPECKER_VERSITYGW := $(VERSITYGW)

.PHONY: run run-etcd test test-long bench bench-report lint clean tools

# A 3-node replicated KV store on 127.0.0.1 (HTTP :8001-8003, Raft :7001-7003),
# each node's state in a directory under .cache/kvstore/$(ENGINE). Ctrl-C stops it.
ENGINE ?= hashicorp
run:
	$(GO) build -o $(CACHE)/bin/kvstore ./examples/kvstore
	$(CACHE)/bin/kvstore cluster --engine $(ENGINE) --data-dir $(CACHE)/kvstore

run-etcd:
	$(MAKE) run ENGINE=etcd

tools: $(VERSITYGW)

$(VERSITYGW):
	@echo "building versitygw $(VERSITYGW_VERSION) (S3 server for tests) into $(CACHE)/bin ..."
	@mkdir -p $(CACHE)/bin
	GOBIN=$(CACHE)/bin $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

test: tools
	$(GO) test -race -timeout 20m ./...

test-long: tools
	RAPID_CHECKS=500 $(GO) test -race -timeout 90m ./...

bench: tools
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./objstore/... ./wal/...

# The full benchmark report (BENCHMARKS.md's tables and charts), ~10 minutes.
bench-report: tools
	$(GO) run ./cmd/woodpecker bench --out docs/bench/file
	$(GO) run ./cmd/woodpecker bench --server versitygw --out docs/bench/versitygw
	$(GO) run ./cmd/woodpecker bench --server versitygw --latency 20ms-60ms --out docs/bench/versitygw-s3-standard
	$(GO) run ./cmd/woodpecker bench --server versitygw --latency 5ms --steps raw,sync --out docs/bench/versitygw-s3-express

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(CACHE)/demo $(CACHE)/kvstore
	$(GO) clean -testcache
