#!/usr/bin/env bash
# Brings every package's PublicAPI.Unshipped.txt in line with its code (Microsoft.CodeAnalysis.PublicApiAnalyzers):
# builds the packages with warnings not as errors, then for each RS0016 ("Symbol '<line>' is not part of the declared
# public API") appends <line> to the project's PublicAPI.Unshipped.txt, and for each RS0017 ("Symbol '<line>' is part
# of the declared API, but is either not public or could not be found") removes <line> from it (or, when the line is
# in PublicAPI.Shipped.txt, records it as *REMOVED*<line> in Unshipped, the analyzer's convention for a removed shipped
# API). Repeats until a build reports neither. Run it after merging branches that add public API, review the diff, and
# commit it (docs/architecture.md, "Conventions").
#
#   tests/update-public-api.sh [packages/<Name>/src ...]     (default: every packages/*/src)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

projects=()
if [ $# -gt 0 ]; then
  for d in "$@"; do projects+=("$(ls "$d"/*.csproj)"); done
else
  for p in packages/*/src/*.csproj; do projects+=("$p"); done
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A solution filter over the package projects: one build, each project compiled once.
{
  printf '{ "solution": { "path": "%s", "projects": [' "$root/Packages.sln"
  sep=''
  for p in "${projects[@]}"; do printf '%s"%s"' "$sep" "$p"; sep=', '; done
  printf '] } }\n'
} > "$tmp/packages.slnf"

for pass in 1 2 3; do
  # --no-incremental: an up-to-date project would report no diagnostics.
  dotnet build "$tmp/packages.slnf" --no-incremental -nologo -clp:NoSummary \
    -p:TreatWarningsAsErrors=false -p:GenerateDocumentationFile=true > "$tmp/build.log" 2>&1 || true
  if grep -qE ': error (CS|MSB|NU)[0-9]+' "$tmp/build.log"; then
    echo "update-public-api: the build fails for another reason:" >&2
    grep -E ': error ' "$tmp/build.log" | sort -u | head -20 >&2
    exit 1
  fi
  # "<file>(l,c): warning RS0016: Symbol '<line>' is not part of ... [<project>]" -> "RS0016<TAB><project dir><TAB><line>"
  { grep -E ': (warning|error) RS001[67]: ' "$tmp/build.log" || true; } \
    | sed -E "s/^.*: (warning|error) (RS001[67]): Symbol '(.*)' is (not part of the declared public API|part of the declared API, but is either not public or could not be found).* \[(.*)\/[^/]*\.csproj\]$/\2\t\5\t\3/" \
    | sort -u > "$tmp/diagnostics.tsv"
  if [ ! -s "$tmp/diagnostics.tsv" ]; then
    echo "update-public-api: every package's public API is declared (pass $pass)"
    exit 0
  fi
  if grep -qvE '^RS001[67]	' "$tmp/diagnostics.tsv"; then
    echo "update-public-api: could not parse:" >&2
    grep -vE '^RS001[67]	' "$tmp/diagnostics.tsv" | head >&2
    exit 1
  fi
  added=0 removed=0
  while IFS=$'\t' read -r id dir line; do
    unshipped="$dir/PublicAPI.Unshipped.txt" shipped="$dir/PublicAPI.Shipped.txt"
    [ -f "$unshipped" ] || printf '#nullable enable\n' > "$unshipped"
    if [ "$id" = RS0016 ]; then
      printf '%s\n' "$line" >> "$unshipped"
      added=$((added + 1))
    elif grep -qxF -- "$line" "$unshipped"; then
      grep -vxF -- "$line" "$unshipped" > "$tmp/u" || true
      cat "$tmp/u" > "$unshipped"
      removed=$((removed + 1))
    elif [ -f "$shipped" ] && grep -qxF -- "$line" "$shipped"; then
      printf '*REMOVED*%s\n' "$line" >> "$unshipped"
      removed=$((removed + 1))
    fi
  done < "$tmp/diagnostics.tsv"
  # Keep each file sorted after its #nullable header, so merges of parallel branches conflict as little as possible.
  for p in "${projects[@]}"; do
    u="$(dirname "$p")/PublicAPI.Unshipped.txt"
    [ -f "$u" ] || continue
    { grep -xF '#nullable enable' "$u" | head -1; grep -vxF '#nullable enable' "$u" | LC_ALL=C sort -u; } > "$tmp/u"
    cat "$tmp/u" > "$u"
  done
  echo "update-public-api: pass $pass: $added line(s) added, $removed removed"
done
echo "update-public-api: diagnostics remain after 3 passes; see a build of the packages" >&2
exit 1
