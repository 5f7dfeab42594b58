# chatscale: `make test` is the one command CI and developers run.
.PHONY: test deps lint testenv test-build patch-test rust-test cluster-test lifecycle-test local-cluster js-test sim run bench bench-scaleout bench-rooms bench-artillery crds chart-test alerts-test python-test

CHAT_SERVER_BIN := $(CURDIR)/target/debug/chat-server

test: deps lint testenv rust-test js-test alerts-test python-test sim

# Debian packages and the pinned npm test client (see scripts/install-test-deps.sh).
deps:
	scripts/install-test-deps.sh

# The real Kubernetes control plane for the operator's tests (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm and the
# Gateway API / Prometheus Operator CRDs), built with Go from the pinned module
# in testenv/ into target/testenv. Quick when nothing changed.
testenv:
	testenv/build.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	# The fuzz crate is outside the workspace, with a lock file of its own:
	# a new dependency of chat-server must reach it too (no build needed).
	cargo metadata --locked --format-version 1 --manifest-path chat-server/fuzz/Cargo.toml > /dev/null

# One build for every test: the workspace's test build also builds
# target/debug/chat-server, which the Rust end-to-end tests and the JS tests
# start. (`cargo build -p chat-server` alone resolves other dependency features
# and compiles much of the tree a second time.)
test-build:
	cargo test --workspace --locked --no-run

# The whole test suite of each patched dependency (patches/README.md), with
# the lock file it was published with; its dev-dependencies come from
# crates.io. Not part of `test`: a cold run takes over 3 minutes on 2 cores.
patch-test:
	cargo test --manifest-path patches/socketioxide/Cargo.toml --locked --all-features --target-dir target/patches
	cargo test --manifest-path patches/engineioxide/Cargo.toml --locked --all-features --target-dir target/patches

# Unit tests and the Rust end-to-end tests (they start the real binaries and
# the control plane) in a network namespace with only loopback
# (scripts/isolated): nothing they start can reach another address.
rust-test: test-build testenv
	scripts/isolated cargo test --workspace --locked --offline

# The operator against the real control plane alone (also part of rust-test).
cluster-test: testenv
	scripts/isolated cargo test -p chatscale-operator --locked --offline --test cluster

# The whole product with pods that really run (operator/tests/lifecycle.rs,
# also part of rust-test), printing its measurements.
lifecycle-test: test-build testenv
	scripts/isolated cargo test -p chatscale-operator --locked --offline --test lifecycle -- --nocapture

# Try the operator without a cluster: the real control plane, the chart
# installed with helm, examples/minimal.yaml applied, its pods run as local
# processes (kwok for the kubelets, the pod runner for the container runtime)
# behind nginx. Prints the kubeconfig and the demo page's URL; Ctrl-C stops
# everything. Needs root (a private /etc/hosts for the Service names).
local-cluster: deps testenv test-build
	cargo build -p chatscale-tests --bin local-cluster --locked
	scripts/isolated --host-network target/debug/local-cluster

# The official socket.io-client and headless Chromium against the same binary.
js-test: test-build
	cd tests/js && CHAT_SERVER_BIN=$(CHAT_SERVER_BIN) npm test

# The shipped alerts (charts/chatscale-operator/rules/chatscale-alerts.yaml)
# with Debian's promtool: `check rules`, then `test rules` with input series
# for every alert (fires when it should, silent when it should not).
alerts-test:
	tests/prometheus/run.sh

# The Python client example (examples/python, python-socketio) against the
# real chat-server and redis-server, in a venv of its own under target/.
python-test: test-build
	CHAT_SERVER_BIN=$(CHAT_SERVER_BIN) examples/python/run-tests.sh

# The autoscaling simulator on every scenario: chatscale, the HPA and KEDA
# side by side, and the targets of docs/autoscaling-sim.md as printed numbers
# (PASS or MISS). It fails only if the binary fails, never on a missed
# target. test-build has built it already; the run takes a few seconds.
sim: test-build
	cargo run -q -p chatscale-operator --bin chatscale-sim --locked -- --all

run:
	cargo run --release -p chat-server

# Regenerate everything derived from the operator's types after changing the
# CRD spec or its RBAC: the CRD (crds/ and the chart's copy), the chart's RBAC
# rules, and the ChatCluster reference docs. operator/tests/{examples,chart}.rs fail when stale.
OPERATOR := cargo run -q -p chatscale-operator --bin chatscale-operator --locked --
crds:
	$(OPERATOR) crd > crds/chatcluster.yaml
	cp crds/chatcluster.yaml charts/chatscale-operator/crds/chatcluster.yaml
	$(OPERATOR) rbac > charts/chatscale-operator/files/clusterrole.yaml
	$(OPERATOR) docs > docs/chatcluster-reference.md

# The Helm chart alone (also part of rust-test): strict lint, renders checked
# against the Kubernetes schemas, RBAC equal to the operator's list.
chart-test:
	cargo test -p chatscale-operator --locked --test chart

# Coverage-guided fuzzing (not part of `make test`, which replays the checked-in
# corpus through chat-server/tests/fuzz_corpus.rs): event payload decoding and
# validation, rooms claims and handshake tokens, for FUZZ_SECONDS. cargo-fuzz
# drives libFuzzer with nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. New inputs go to corpus-work/ (not committed).
.PHONY: fuzz
FUZZ_SECONDS ?= 600
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
	mkdir -p chat-server/fuzz/corpus-work
	cd chat-server/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --debug-assertions \
		events corpus-work corpus/events -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 -print_final_stats=1

# Side-by-side benchmark (not part of `make test`): release chat-server, the
# Node.js reference and the bare WebSocket floor (bench/floor) under the same
# chatscale-load runs; prints one table (bench/README.md; scale it down with
# BENCH_SCALE=0.1 and the other BENCH_* vars).
bench:
	scripts/install-test-deps.sh
	cargo build --release -p chat-server -p chatscale-load -p chatscale-floor --locked
	cd bench/node-reference && npm ci --no-audit --no-fund --loglevel=error
	CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server LOAD_BIN=$(CURDIR)/target/release/chatscale-load \
		FLOOR_BIN=$(CURDIR)/target/release/chatscale-floor node bench/compare.mjs

# Scale-out benchmark: 3 release chat-servers on one fresh redis-server; prints
# cross-server latency and Redis commands per AI answer.
bench-scaleout:
	cargo build --release -p chat-server --locked
	CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server node bench/scaleout.mjs

# Room channels benchmark: 10 release chat-servers with --room-channels shared
# and per-room, on a fresh redis-server and on a fresh 3-master Redis Cluster;
# prints per-server inbound pub/sub messages, Redis bytes out and shard shares.
bench-rooms:
	cargo build --release -p chat-server --locked
	CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server node bench/rooms.mjs

# Artillery (Socket.IO v3+ engine, bench/artillery/chat.yml): against a local
# cluster it starts (3 release chat-servers on Redis behind nginx), or against a
# running server on this machine with ARTILLERY_TARGET=http://127.0.0.1:3000.
bench-artillery:
	cargo build --release -p chat-server --locked
	cd bench/artillery && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	if [ -n "$(ARTILLERY_TARGET)" ]; then \
		cd bench/artillery && ./node_modules/.bin/artillery run --target $(ARTILLERY_TARGET) chat.yml; \
	else \
		CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server node bench/artillery/cluster.mjs; \
	fi
