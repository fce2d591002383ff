# The commands of the README: `make demo`, `make test`, and `make demo-cluster` (root).
SHELL := /bin/bash
VENV := .venv
export CARGO_TERM_COLOR ?= never

.PHONY: demo demo-cluster test venv lint unit bench crd docs image-binary image

venv: $(VENV)/.installed
$(VENV)/.installed: tests/peers/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
	touch $@

demo:
	scripts/demo

# The operator on a local control plane with a real node (root): the chart, the image built
# from this checkout, a sample source against moto, events shown. KEEP=1 leaves it running.
demo-cluster: venv
	scripts/demo-cluster $(if $(filter 1,$(KEEP)),--keep)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Everything: formatting, lints, unit tests, end-to-end tests against moto and
# against a Kubernetes control plane (tests/cluster; built once, cached outside the repo).
# Clippy runs first so that the suite's last line is its summary.
test: venv
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	tests/cluster/up --build-only
	@# The real node's kubelet, pause image and Debian packages (root only: elsewhere the
	@# real-node tests say they are skipped).
	if [ "$$(id -u)" = 0 ]; then tests/cluster/up --build-only --node=real; fi
	tests/cluster/helm --build-only
	scripts/build-static >/dev/null
	set -o pipefail; DYNAMODB_SOURCE_VENV=$(CURDIR)/$(VENV) \
	  cargo test --workspace --locked --lib --bins --tests 2>&1 | scripts/test-summary

bench: venv
	cargo bench --bench throughput

# Regenerates config/crd/ from the Rust types, and the chart's copy of it.
crd:
	cargo run --quiet --bin dynamodb-source -- crd > config/crd/awsdynamodbsources.yaml
	cp config/crd/awsdynamodbsources.yaml charts/dynamodb-source/crds/awsdynamodbsources.yaml

# Regenerates docs/configuration.md from the CRD (tests/it/config_reference.rs checks it).
docs:
	DYNAMODB_SOURCE_UPDATE_DOCS=1 cargo test --quiet --locked --test it config_reference

# The release binary the container image ships (static; what the Dockerfile builds).
image-binary:
	scripts/build-static

# The image, built offline from the Dockerfile with buildah from that binary:
# target/image/dynamodb-source.tar (docker-archive), its digest on stdout.
image: image-binary
	scripts/build-image
