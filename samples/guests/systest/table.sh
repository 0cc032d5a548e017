#!/bin/sh
# Runs every test kernel under QEMU TCG and vmmkit-hv (QemuOracleTests) and prints the pass/diverge table.
#   samples/guests/systest/table.sh
cd "$(dirname "$0")/../../.." || exit 1
dotnet test samples/ReferenceHypervisor/tests -c Release --filter "FullyQualifiedName~QemuOracleTests" \
  --logger "console;verbosity=detailed" 2>&1 | grep -o 'systest-table: .*' | sort -u | sed 's/^systest-table: //'
