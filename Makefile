# woodpecker — build, test and benchmark.
#
#   make run        start the demo on the embedded default storage (a local directory)
#   make test       everything, with -race, against real servers the tests start themselves
#   make test-long  the heavy version a release runs (more rapid checks)
#   make bench      raw object-store limits and hot-path benchmarks
#   make lint       gofmt + go vet
#   make clean      remove build caches and demo data

GO        ?= go
CACHE     := $(CURDIR)/.cache
VERSITYGW := $(CACHE)/bin/versitygw
VERSITYGW_VERSION := v1.8.0

# The S3 test server is built once into the cache directory; tests find it here.
export WOODPECKER_VERSITYGW := $(VERSITYGW)

.PHONY: run test test-long bench lint clean tools

run:
	$(GO) run ./cmd/woodpecker demo --dir $(CACHE)/demo

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
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./objstore/ ./wal/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(CACHE)/demo
	$(GO) clean -testcache
