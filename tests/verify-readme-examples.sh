#!/usr/bin/env bash
# Compiles and runs every package README's example against the packed packages, as a new user would:
# a fresh console app outside the repository, the package added from the local feed (artifacts/packages,
# made by tests/verify-packages.sh), the example pasted in as Program.cs.
# The example is the first ```csharp block after a "## Example" heading. When a ```text block follows it
# before the next heading, the program's standard output must equal that block (trailing blanks ignored).
# A README without an "## Example" section fails. Prints "PASS/FAIL <package> README example" lines and a last
# line "N passed, N failed". Articles under docs/articles that carry an "<!-- example-package: VmmKit.X -->" comment
# are checked the same way against that package.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feed=$root/artifacts/packages
version=$(sed -nE 's|.*<Version>([^<]+)</Version>.*|\1|p' Directory.Build.props | head -1)
passed=0; failed=0
check() { if [ -z "$2" ]; then echo "PASS $1"; passed=$((passed+1)); else echo "FAIL $1: $2"; failed=$((failed+1)); fi; }

# Prints block N (1 = the csharp example, 2 = the expected output) of the README's Example section.
extract() {
  awk -v want="$2" '
    /^## / { insec = ($0 ~ /^## Example/) ; if (!insec && seen) exit; if (insec) seen = 1; next }
    !insec { next }
    /^```/ {
      if (inblock) { inblock = 0; if (kind == want) exit; next }
      lang = substr($0, 4)
      if (state == 0 && lang == "csharp") { inblock = 1; kind = 1; state = 1; next }
      if (state == 1 && lang == "text")   { inblock = 1; kind = 2; state = 2; next }
      inblock = 1; kind = 0; next
    }
    inblock && kind == want { print }
  ' "$1"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML

# Package READMEs (package VmmKit.<Name>), then articles that name their package in an
# "<!-- example-package: VmmKit.X -->" comment.
examples=()
for readme in packages/*/README.md; do examples+=("$readme:VmmKit.$(basename "$(dirname "$readme")")"); done
for article in docs/articles/*.md; do
  pkg=$(sed -nE 's/.*<!-- example-package: ([A-Za-z.]+) -->.*/\1/p' "$article" | head -1)
  [ -n "$pkg" ] && examples+=("$article:$pkg")
done

for entry in "${examples[@]}"; do
  readme=${entry%%:*}; id=${entry##*:}
  name=$(basename "$readme" .md)-${id#VmmKit.}
  label="$readme example ($id)"
  if ! ls "$feed/$id.$version.nupkg" >/dev/null 2>&1; then
    check "$label" "no package $id $version in $feed (run tests/verify-packages.sh first)"; continue
  fi
  code=$(extract "$readme" 1)
  if [ -z "$code" ]; then check "$label" "no \`\`\`csharp block under a '## Example' heading"; continue; fi
  expected=$(extract "$readme" 2)
  dir="$work/$name"; mkdir -p "$dir"; cp "$work/nuget.config" "$dir/"
  cat > "$dir/Example.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
    <AllowUnsafeBlocks>true</AllowUnsafeBlocks>
    <NuGetAudit>false</NuGetAudit>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="$id" Version="$version" />
  </ItemGroup>
</Project>
XML
  printf '%s\n' "$code" > "$dir/Program.cs"
  if ! (cd "$dir" && dotnet build -c Release -v q -nologo --packages "$work/nuget-cache" >build.log 2>&1); then
    check "$label" "does not compile: $(grep -E 'error' "$dir/build.log" | sed -E 's|^.*/Program.cs|Program.cs|' | sort -u | head -5 | tr '\n' ' ')"
    continue
  fi
  if ! actual=$(cd "$dir" && timeout 120 dotnet bin/Release/net10.0/Example.dll 2>"$dir/stderr.log"); then
    check "$label" "exited with an error: $(tail -3 "$dir/stderr.log" | tr '\n' ' ')"; continue
  fi
  if [ -n "$expected" ] && [ "$(sed -E 's/[[:space:]]+$//' <<<"$actual")" != "$(sed -E 's/[[:space:]]+$//' <<<"$expected")" ]; then
    check "$label" "printed something else: $(diff <(echo "$expected") <(echo "$actual") | head -8 | tr '\n' ' ')"; continue
  fi
  check "$label" ""
done
echo "$passed passed, $failed failed"
