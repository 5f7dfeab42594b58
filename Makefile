# chatscale: `make test` is the one command CI and developers run.
.PHONY: test deps lint rust-test js-test run bench crds chart-test

CHAT_SERVER_BIN := $(CURDIR)/target/debug/chat-server

test: deps lint rust-test js-test

# Debian packages and the pinned npm test client (see scripts/install-test-deps.sh).
deps:
	scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Unit tests and the Rust end-to-end tests (they build and start the real binary).
rust-test:
	cargo test --workspace --locked

# The official socket.io-client and headless Chromium against the same binary.
js-test:
	cargo build -p chat-server --locked
	cd tests/js && CHAT_SERVER_BIN=$(CHAT_SERVER_BIN) npm test

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

# Scale-out benchmark (not part of `make test`): 3 release chat-servers on one
# fresh redis-server; prints cross-server latency and Redis commands per AI answer.
bench:
	cargo build --release -p chat-server --locked
	CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server node bench/scaleout.mjs
