#!/usr/bin/env python3
"""`helm template` and `helm lint` without the helm binary, through Helm's
own Go library (Helm v4 SDK, v4.2.3 in helm-python-sdk 0.2.2) as shipped in the
PyPI package helm-python-sdk (installed by scripts/install-test-deps.sh). Offline: no cluster, no network.

    scripts/helm.py template CHART [-f VALUES] [--name NAME] [--namespace NS]
    scripts/helm.py lint CHART [-f VALUES] [--kube-version v1.33.0]

template prints the manifests like `helm template` (one document per object,
each after a `# Source:` comment, NOTES.txt left out; CRDs from crds/ first
with --include-crds); lint is strict (warnings fail) and exits non-zero on
any finding above INFO.
"""

import argparse
import sys

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def values_of(paths):
    merged = {}
    for path in paths or []:
        with open(path, encoding="utf-8") as f:
            merged = deep_merge(merged, helm.values_from_yaml(f.read()) or {})
    return merged


def deep_merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def template(args):
    chart = helm.Chart.load(args.chart)
    values = values_of(args.values)
    # Like `helm template`/`helm install`: values are checked against values.schema.json.
    chart.validate_schema(chart.merge_values(values))
    rendered = chart.render(
        values=values, name=args.name, namespace=args.namespace, is_install=True
    )
    out = []
    if args.include_crds:
        for crd in chart.crds:
            out.append(f"---\n# Source: {crd['name']}\n{crd['data'].strip()}\n")
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") and not args.notes:
            continue
        text = rendered[path].strip()
        if not text:
            continue
        for doc in text.split("\n---\n"):
            doc = doc.strip().removeprefix("---").strip()
            if doc:
                out.append(f"---\n# Source: {path}\n{doc}\n")
    sys.stdout.write("".join(out))


def lint(args):
    report = helm.lint(
        args.chart,
        values_of(args.values),
        strict=True,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    print(f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})")
    failed = bool(report.get("errors"))
    for message in report.get("messages") or []:
        severity = SEVERITY.get(message.get("severity"), "?")
        print(f"[{severity}] {message.get('path')}: {message.get('error')}")
        failed |= message.get("severity", 0) >= 2
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
    charts = report.get("total_charts_linted", 0)
    print(f"{charts} chart(s) linted, {'failed' if failed else 'no failures'}")
    sys.exit(1 if failed or charts != 1 else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("template", "lint"):
        p = sub.add_parser(name)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append")
        p.add_argument("--namespace", default="chatscale-system")
        if name == "template":
            p.add_argument("--name", default="chatscale-operator")
            p.add_argument("--include-crds", action="store_true")
            p.add_argument("--notes", action="store_true", help="print NOTES.txt too")
        else:
            p.add_argument("--kube-version", default="v1.33.0")
    args = parser.parse_args()
    try:
        {"template": template, "lint": lint}[args.command](args)
    except helm.HelmError as error:  # a failed render or invalid values
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
