# kubewasm developer entry points. `make dev` and `make test` are the two set-up
# commands in README.md; both install what they need first.

CARGO ?= cargo
DEV_DIR ?= $(CURDIR)/target/dev-cluster

.PHONY: dev test plugins prerequisites assets lint

## Bring up a local control plane (etcd + kube-apiserver) and keep it in the foreground.
dev: prerequisites assets
	$(CARGO) run --release -p kubewasm -- cluster up --dir $(DEV_DIR)

## Run every test: unit tests and integration tests against a real control plane.
test: prerequisites assets plugins
	$(CARGO) test --workspace --no-fail-fast

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
