#!/usr/bin/env bash
# Audits the Python packages adoption-pulse runs with for known vulnerabilities (pip-audit).
#
#   deploy/audit.sh                 # PyPI's vulnerability data (the PyPI JSON API)
#   AUDIT_SERVICE=osv deploy/audit.sh   # OSV (api.osv.dev) instead
#   AUDIT_IGNORE="GHSA-xxxx PYSEC-yyyy" deploy/audit.sh   # accepted findings, each with a note in the issue
#   AUDIT_UNREACHABLE_OK=1 deploy/audit.sh   # where no vulnerability data can be reached: warn, exit 0
#
# What is audited: adoption-pulse's installed dependency closure with its `test` extra, pinned to the
# versions installed here (not the rest of the machine's site-packages), so run it after `pip install -e
# ".[test]"` (deploy/setup.sh). pip-audit needs pip-audit itself and network access to the service.
#
# Exit status: 0 no known vulnerability; 1 vulnerabilities found (listed with the versions that fix them);
# 2 the audit could not be done (pip-audit missing, service unreachable, or any package not audited).
# pip-audit alone prints "No known vulnerabilities found" and exits 0 when the service answers 404 for
# every package, which is what a PyPI mirror without the JSON API does: that case is a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SERVICE=${AUDIT_SERVICE:-pypi}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! "$PYTHON" -m pip_audit --version >/dev/null 2>&1; then
  echo "audit: pip-audit is not installed (pip install 'pip-audit>=2.7,<3')" >&2
  exit 2
fi

# The installed dependency closure of adoption-pulse[test], pinned.
"$PYTHON" - "$work/requirements.txt" <<'EOF' || exit 2
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement

ROOT = "adoption-pulse"
pins: dict[str, str] = {}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def walk(name: str, extras: frozenset[str]) -> None:
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        sys.exit(f"audit: {name} is required but not installed; run deploy/setup.sh first")
    key = canonical(dist.metadata["Name"])
    seen = (key, extras)
    if seen in visited:
        return
    visited.add(seen)
    if key != ROOT:
        pins[key] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        markers = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
            walk(requirement.name, frozenset(requirement.extras))


visited: set = set()
walk(ROOT, frozenset({"test"}))
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.writelines(f"{name}=={version}\n" for name, version in sorted(pins.items()))
print(f"audit: {len(pins)} packages (adoption-pulse[test] as installed)")
EOF

ignores=()
for id in ${AUDIT_IGNORE:-}; do ignores+=(--ignore-vuln "$id"); done
unreachable() {  # the audit could not be done: fail, unless told to accept that here
  if [ "${AUDIT_UNREACHABLE_OK:-0}" = 1 ]; then
    echo "audit: WARNING: NOT AUDITED (AUDIT_UNREACHABLE_OK=1); run deploy/audit.sh where $SERVICE is reachable" >&2
    exit 0
  fi
  exit 2
}

set +e
"$PYTHON" -m pip_audit -r "$work/requirements.txt" --no-deps --disable-pip --vulnerability-service "$SERVICE" \
  --progress-spinner off --desc off --format json --output "$work/report.json" "${ignores[@]}" 2>"$work/stderr"
status=$?
set -e

set +e
"$PYTHON" - "$work/report.json" "$work/stderr" "$status" "$SERVICE" <<'EOF'
import json
import sys

report_path, stderr_path, status, service = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
except (OSError, ValueError):
    stderr = open(stderr_path, encoding="utf-8", errors="replace").read()
    print(f"audit: pip-audit produced no report (exit {status}); is the {service} vulnerability service "
          f"reachable from here?\n{stderr[-2000:]}", file=sys.stderr)
    sys.exit(2)
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
found = [(d["name"], d["version"], v) for d in deps for v in d.get("vulns", [])]
for name, version, vuln in found:
    fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
    aliases = ", ".join(vuln.get("aliases") or [])
    print(f"VULNERABLE {name} {version}: {vuln['id']}{f' ({aliases})' if aliases else ''}; fixed in {fixes}")
if skipped:
    print(f"audit: {len(skipped)} of {len(deps)} packages could not be audited against {service}, e.g. "
          f"{skipped[0]['name']}: {skipped[0]['skip_reason']}", file=sys.stderr)
    print("audit: the vulnerability data is not reachable (a PyPI mirror without the JSON API answers 404); "
          "try AUDIT_SERVICE=osv, or run where pypi.org or api.osv.dev is reachable", file=sys.stderr)
    sys.exit(2)
if found:
    print(f"audit: {len(found)} known vulnerabilities in {len({n for n, _, _ in found})} packages", file=sys.stderr)
    sys.exit(1)
print(f"audit: {len(deps)} packages audited against {service}: no known vulnerabilities")
EOF
verdict=$?
set -e
[ "$verdict" = 2 ] && unreachable
exit "$verdict"
