# kubewasm developer entry points. `make dev` and `make test` are the two set-up
# commands in README.md; both install what they need first.

CARGO ?= cargo
DEV_DIR ?= $(CURDIR)/target/dev-cluster

.PHONY: dev test plugins prerequisites assets lint

## Bring up a local control plane, build the example plugins and run the host on them.
dev: prerequisites assets plugins
	$(CARGO) run --release -p kubewasm -- dev --dir $(DEV_DIR) --plugins target/plugins

## Run every test: unit tests and integration tests against a real control plane.
test: prerequisites assets plugins
	$(CARGO) test --no-fail-fast

## Build every plugin into target/plugins/ (NAME.wasm beside its grant NAME.yaml) and
## the test guests into target/test-plugins/.
plugins: prerequisites
	scripts/build-plugins.sh

prerequisites:
	scripts/prerequisites.sh

assets:
	scripts/assets.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
