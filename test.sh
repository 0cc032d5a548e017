#!/usr/bin/env bash
# Runs every test project of the solution on a fresh Debian 12 machine.
# Installs the Debian tools the tests use as oracles (when missing), builds, tests,
# and ends with one line "N passed, N failed" summing all test projects.
set -euo pipefail
cd "$(dirname "$0")"

# Oracles and toolchains (docs/architecture.md, "Sources of truth and oracles"): gcc for guests and ABI layouts, Xen's public headers,
# Debian's xenstore-utils, Bochs with VMX+EPT, QEMU for speed comparisons.
apt_packages=(unzip make gcc binutils libc6-dev libxen-dev xenstore-utils bochs bochsbios vgabios qemu-system-x86 grub-xen-host busybox-static e2fsprogs fdisk cpio tmux xz-utils bsdutils)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's xen-utils-4.17 holds two oracles: xenstore-control (drives xenstored's live update) and Xen's own
# xenstored (run under a fake-Xen LD_PRELOAD shim by the XenStore differential tests). Installing the package
# would pull in systemd and Xen's init scripts; the tests only run the binaries (their libraries come with
# libxen-dev), so the package is unpacked, not installed, under artifacts/debian/xen-utils.
xen_utils=artifacts/debian/xen-utils
if [ ! -x "$xen_utils/usr/lib/xen-4.17/bin/xenstored" ] || [ ! -x "$xen_utils/usr/lib/xen-4.17/bin/xenstore-control" ]; then
  echo "Unpacking xenstored and xenstore-control from Debian's xen-utils-4.17"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  deb_dir=$(mktemp -d); chmod 777 "$deb_dir"
  if ! (cd "$deb_dir" && apt-get download -qq xen-utils-4.17 2>/dev/null); then
    $sudo_cmd apt-get update -qq
    (cd "$deb_dir" && apt-get download -qq xen-utils-4.17 2>/dev/null)
  fi
  mkdir -p "$xen_utils"
  dpkg-deb -x "$deb_dir"/xen-utils-4.17_*.deb "$xen_utils"
  rm -rf "$deb_dir"
fi
export VMMKIT_XEN_UTILS_ROOT="$PWD/$xen_utils"

# Debian's Linux kernel for the Linux boot test (samples/ReferenceHypervisor/tests/LinuxBootTests.cs): linux-image-amd64
# is a metapackage, so its dependency (linux-image-6.1.0-N-amd64) is downloaded and unpacked, never installed or committed,
# under artifacts/debian/linux-image; the test extracts vmlinux from boot/vmlinuz-*.
linux_image=artifacts/debian/linux-image
if ! ls "$linux_image"/boot/vmlinuz-* >/dev/null 2>&1; then
  echo "Unpacking Debian's linux-image-amd64 kernel"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  linux_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$linux_pkg" ]; then
    $sudo_cmd apt-get update -qq
    linux_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  deb_dir=$(mktemp -d); chmod 777 "$deb_dir"
  (cd "$deb_dir" && apt-get download -qq "$linux_pkg" 2>/dev/null)
  mkdir -p "$linux_image"
  dpkg-deb -x "$deb_dir"/"$linux_pkg"_*.deb "$linux_image"
  rm -rf "$deb_dir"
fi
export VMMKIT_DEBIAN_LINUX_ROOT="$PWD/$linux_image"

log=$(mktemp)
status=0
dotnet test Packages.sln -c Release "$@" 2>&1 | tee "$log" || status=$?
# The emulator's whole test suite a second time with the translating tier on in lock-step (issue 17): every block
# translated at first sight, each translated run checked against the interpreter, a mismatch fails the test that hit it.
# Its summary line is tagged so it counts apart from the first run's.
if [ "$status" -eq 0 ]; then
  VMMKIT_EMULATOR_TIER=LockStep dotnet test packages/Vmx.Emulator/tests/VmmKit.Vmx.Emulator.Tests.csproj -c Release --no-build \
    --filter 'FullyQualifiedName!~LockStepMillion' 2>&1 | sed 's/Tests\.dll (/Tests.dll [LockStep] (/' | tee -a "$log" || status=$?
fi

# Each test project prints "Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12, Duration: 3 s - X.dll (net10.0)"
# (or "Failed!"); the same line can be echoed twice, so count each distinct line once.
summaries=$(grep -E '(Passed|Failed)! +- Failed: +[0-9]+, Passed: +[0-9]+' "$log" | sed -E 's/^.*((Passed|Failed)! +- )/\1/' | sort -u)
passed=$(sed -nE 's/.*Passed: +([0-9]+).*/\1/p' <<<"$summaries" | awk '{s+=$1} END {print s+0}')
failed=$(sed -nE 's/.*- Failed: +([0-9]+).*/\1/p' <<<"$summaries" | awk '{s+=$1} END {print s+0}')
passed=${passed:-0}; failed=${failed:-0}

# Checks that print PASS/FAIL lines and a last line "N passed, N failed", added to the totals.
run_check() {
  local out p f
  out=$("$@"); echo "$out" | sed '$d'
  p=$(tail -1 <<<"$out" | awk '{print $1}'); f=$(tail -1 <<<"$out" | awk '{print $3}')
  passed=$((passed + p)); failed=$((failed + f)); [ "$f" -eq 0 ] || status=1
}
# Packaging: one .nupkg per package with README, XML docs and the dependency graph of docs/architecture.md;
# then every README example compiled and run against those packages, the DocFX API site, and the `dotnet new`
# templates installed from their packed pack, instantiated, built and run.
if [ "$status" -eq 0 ]; then
  run_check tests/verify-packages.sh
  run_check tests/verify-readme-examples.sh
  run_check tests/verify-docs.sh
  run_check tests/verify-templates.sh
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "dotnet test failed before all tests ran (build error or crashed test host)"; fi
rm -f "$log"
echo "$passed passed, $failed failed"
exit "$status"
