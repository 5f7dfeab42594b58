#!/usr/bin/env bash
# The shipped alert rules (charts/chatscale-operator/rules/chatscale-alerts.yaml)
# checked and unit-tested with Debian's promtool: `check rules` (syntax, PromQL),
# then `test rules` (chatscale-alerts.test.yaml: each alert fires on input
# series where it should and stays silent where it should not).
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "promtool missing: install Debian's prometheus package (apt-get install prometheus)" >&2; exit 1; }
promtool check rules ../../charts/chatscale-operator/rules/chatscale-alerts.yaml
promtool test rules chatscale-alerts.test.yaml
