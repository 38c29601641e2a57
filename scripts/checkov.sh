#!/usr/bin/env bash
# Static security scan of infra/ (Terraform) with checkov, fully offline.
#
# checkov pins many packages, so it lives in its own venv (.venv-tools/checkov), never in .venv.
# Exits non-zero on any failed check, on a parse error in infra/, or if nothing was
# scanned. Accepted findings are suppressed only by an inline, justified
# `#checkov:skip=CKV_...:reason` comment at the resource.
#
# Environment: PYTHON (interpreter for the venv, default python3), CHECKOV_VENV,
# CHECKOV_VERSION. Extra arguments are passed to checkov.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-tools/checkov}"
VERSION="${CHECKOV_VERSION:-3.3.30}"
PY="${PYTHON:-python3}"

installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)"
if [ "$installed" != "$VERSION" ] || [ ! -x "$VENV/bin/checkov" ]; then
  echo "checkov.sh: installing checkov $VERSION into $VENV" >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$VERSION"
fi

# Offline and local only: no guideline/mapping download, no platform policies, no upload.
export BC_SKIP_MAPPING=TRUE
unset BC_API_KEY PRISMA_API_URL BC_API_URL || true

REPORT_DIR="$(mktemp -d)"
trap 'rm -rf "$REPORT_DIR"' EXIT

cd "$ROOT"
set +e
"$VENV/bin/checkov" -d infra --framework terraform --quiet --compact --skip-download \
  --output cli --output json --output-file-path "console,$REPORT_DIR/results.json" "$@"
status=$?
set -e

# checkov exits 0 when it could not parse a file; make that (or an empty scan) a failure.
"$VENV/bin/python" - "$REPORT_DIR/results.json" <<'PY' || status=1
import json, sys

with open(sys.argv[1]) as f:
    report = json.load(f)
reports = report if isinstance(report, list) else [report]
summary = {"parsing_errors": 0, "resource_count": 0, "failed": 0}
for r in reports:
    for key in summary:
        summary[key] += r.get("summary", {}).get(key, 0)
if summary["parsing_errors"] or summary["resource_count"] == 0:
    print(f"checkov.sh: scan incomplete: {summary}", file=sys.stderr)
    sys.exit(1)
PY

exit "$status"
