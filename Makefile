# chatscale: `make test` is the one command CI and developers run.
.PHONY: test deps lint rust-test js-test run bench

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

# Scale-out benchmark (not part of `make test`): 3 release chat-servers on one
# fresh redis-server; prints cross-server latency and Redis commands per AI answer.
bench:
	cargo build --release -p chat-server --locked
	CHAT_SERVER_BIN=$(CURDIR)/target/release/chat-server node bench/scaleout.mjs
