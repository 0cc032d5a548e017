#!/usr/bin/env bash
# Builds the API reference site with DocFX (docs/docfx.json: every package's XML docs plus the articles) into
# artifacts/docs/site. Any DocFX warning — a broken cross-reference, a missing file, a project that does not
# load — fails the check. Prints "PASS/FAIL docs site" and a last line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
log=artifacts/docs/docfx.log
mkdir -p artifacts/docs
rm -rf artifacts/docs/site docs/api/*.yml docs/api/.manifest
if ! dotnet tool restore >"$log" 2>&1; then
  echo "FAIL docs site: dotnet tool restore failed: $(tail -3 "$log" | tr '\n' ' ')"; echo "0 passed, 1 failed"; exit 0
fi
dotnet docfx docs/docfx.json >>"$log" 2>&1; rc=$?
warnings=$(grep -E '(^|: )warning|\[Failure\]' "$log" | sort -u)
if [ "$rc" -ne 0 ] || [ -n "$warnings" ] || [ ! -f artifacts/docs/site/index.html ]; then
  echo "FAIL docs site (exit $rc): $(head -10 <<<"$warnings" | tr '\n' ' ')"; echo "0 passed, 1 failed"
else
  echo "PASS docs site: $(ls artifacts/docs/site/api/*.html | wc -l) API pages in artifacts/docs/site"; echo "1 passed, 0 failed"
fi
