#!/usr/bin/env bash
# Regenerate every generated file the tests compare against: the recipe schema, the README's
# recipe reference, the summary and report schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q
target/debug/aibench schema -o schema/recipe.schema.json
python3 - <<'PY'
import subprocess
ref = subprocess.run(["target/debug/aibench", "schema", "--markdown"], capture_output=True, text=True, check=True).stdout
s = open("README.md").read()
start, end = "<!-- recipe-reference:start -->\n", "<!-- recipe-reference:end -->"
a, b = s.index(start) + len(start), s.index(end)
open("README.md", "w").write(s[:a] + ref + s[b:])
PY
AIBENCH_BLESS=1 cargo test -q -p aibench-results --test schema
AIBENCH_BLESS=1 cargo test -q -p aibench-report --test schema
