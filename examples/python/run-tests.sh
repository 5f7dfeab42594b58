#!/usr/bin/env bash
# Runs the Python client example's tests (test_chat_client.py) in a venv under
# target/python-venv, so nothing is installed system-wide. Needs python3 (with
# venv), redis-server, nginx and a built chat-server (cargo build -p chat-server,
# or CHAT_SERVER_BIN). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/python-venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" || { echo "python3 -m venv failed: install python3-venv" >&2; exit 1; }
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" -r "$here/requirements-test.txt"
cd "$here"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ left in the source tree
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" test_chat_client.py
