#!/bin/sh
# Runs one test kernel under QEMU TCG and prints its port-0xE9 transcript: ./run-qemu.sh ../build/systest/NAME.elf
out=$(mktemp)
timeout 30 qemu-system-x86_64 -accel tcg -cpu max -machine pc -m 64 -nographic -no-reboot -display none -nodefaults \
  -kernel "$1" -debugcon file:"$out" -device isa-debug-exit,iobase=0xf4,iosize=0x04 </dev/null
status=$?
cat "$out"; rm -f "$out"
echo "(qemu exit $status)" >&2
