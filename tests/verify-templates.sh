#!/usr/bin/env bash
# Packs the `dotnet new` template pack (templates/), installs it from the packed folder into a private template
# hive, instantiates every template outside the repository, and builds and runs each against the packed VmmKit
# packages (artifacts/packages, made by tests/verify-packages.sh). Prints PASS/FAIL lines and a last line
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feed=$root/artifacts/packages
version=$(sed -nE 's|.*<Version>([^<]+)</Version>.*|\1|p' Directory.Build.props | head -1)
passed=0; failed=0
check() { if [ -z "$2" ]; then echo "PASS $1"; passed=$((passed+1)); else echo "FAIL $1: $2"; failed=$((failed+1)); fi; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

if ! dotnet pack templates/VmmKit.Templates.csproj -c Release -o "$work/pack" -p:Version="$version" >"$work/pack.log" 2>&1; then
  check "template pack" "dotnet pack failed: $(tail -3 "$work/pack.log" | tr '\n' ' ')"; echo "$passed passed, $failed failed"; exit 0
fi
pkg=$(ls "$work"/pack/VmmKit.Templates.*.nupkg | head -1)
hive=$work/hive
if ! dotnet new install "$pkg" --debug:custom-hive "$hive" >"$work/install.log" 2>&1; then
  check "template pack" "dotnet new install failed: $(tail -3 "$work/install.log" | tr '\n' ' ')"; echo "$passed passed, $failed failed"; exit 0
fi
check "template pack installs from $(basename "$pkg")" ""

# Each template: short name, and a line its program must print.
declare -A expect=([vmmkit-vmm]="guest halted, EBX = 0x756E6547" [vmmkit-xenstore-client]="hello from a VmmKit XenStore client")
for t in vmmkit-vmm vmmkit-xenstore-client; do
  dir=$work/$t
  if ! dotnet new "$t" -n "Gen${t//-/}" -o "$dir" --debug:custom-hive "$hive" >"$work/$t.new.log" 2>&1; then
    check "dotnet new $t" "instantiation failed: $(tail -3 "$work/$t.new.log" | tr '\n' ' ')"; continue
  fi
  grep -q "Version=\"$version\"" "$dir"/*.csproj || { check "dotnet new $t" "the template references another VmmKit version than $version"; continue; }
  cat > "$dir/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
  if ! (cd "$dir" && dotnet build -c Release -v q -nologo -p:NuGetAudit=false --packages "$work/nuget-cache" >build.log 2>&1); then
    check "dotnet new $t" "does not build: $(grep -E 'error' "$dir/build.log" | sort -u | head -3 | tr '\n' ' ')"; continue
  fi
  out=$(cd "$dir" && XENSTORED_PATH= timeout 120 dotnet run -c Release --no-build 2>&1)
  if grep -qF "${expect[$t]}" <<<"$out"; then check "dotnet new $t builds and runs" ""
  else check "dotnet new $t" "did not print '${expect[$t]}': $(head -5 <<<"$out" | tr '\n' ' ')"; fi
done
echo "$passed passed, $failed failed"
