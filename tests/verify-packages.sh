#!/usr/bin/env bash
# Packs the solution and checks every package against docs/architecture.md ("Package graph"): one .nupkg per package, each
# with its README, XML docs, and exactly the dependencies of the package graph.
# Prints one line per check ("PASS name" / "FAIL name: why") and a last line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
out=artifacts/packages
rm -rf "$out"; mkdir -p "$out"
declare -A expected=(
  [Ept]=""
  [Vmx]="VmmKit.Ept"
  [Vmx.Emulator]="Iced VmmKit.Ept VmmKit.Vmx"
  [Hypercall]="VmmKit.Ept"
  [EventChannel]="VmmKit.Hypercall"
  [GrantTable]="VmmKit.Ept VmmKit.Hypercall"
  [XenStore]="Microsoft.Extensions.Logging.Abstractions"
  [Boot]="VmmKit.Ept VmmKit.Hypercall"
  [Devices]=""
  [Backends]="Microsoft.Extensions.Logging.Abstractions VmmKit.EventChannel VmmKit.GrantTable VmmKit.XenStore"
)
passed=0; failed=0
check() { if [ -z "$2" ]; then echo "PASS $1"; passed=$((passed+1)); else echo "FAIL $1: $2"; failed=$((failed+1)); fi; }

if ! dotnet pack Packages.sln -c Release --no-restore -o "$out" >"$out/pack.log" 2>&1; then
  check "dotnet pack" "failed: $(tail -5 "$out/pack.log")"
fi
for name in "${!expected[@]}"; do
  id="VmmKit.$name"
  pkg=$(ls "$out"/"$id".[0-9]*.nupkg 2>/dev/null | grep -v '\.snupkg$' | head -1)
  if [ -z "$pkg" ]; then check "$id" "no .nupkg produced"; continue; fi
  files=$(unzip -Z1 "$pkg")
  why=""
  grep -qx 'README.md' <<<"$files" || why="no README.md; "
  grep -qx "lib/net10.0/$id.dll" <<<"$files" || why+="no lib/net10.0/$id.dll; "
  grep -qx "lib/net10.0/$id.xml" <<<"$files" || why+="no XML docs; "
  deps=$(unzip -p "$pkg" "$id.nuspec" | grep -o '<dependency id="[^"]*"' | sed 's/<dependency id="//; s/"//' | sort -u | xargs)
  [ "$deps" = "${expected[$name]}" ] || why+="dependencies '$deps', expected '${expected[$name]}'; "
  check "$id" "$why"
done
count=$(ls "$out"/*.nupkg 2>/dev/null | wc -l)
[ "$count" -eq "${#expected[@]}" ] && check "one package per packages/<Name>" "" || check "one package per packages/<Name>" "$count .nupkg files for ${#expected[@]} packages"
echo "$passed passed, $failed failed"
