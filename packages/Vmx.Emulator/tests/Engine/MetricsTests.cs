using System.Diagnostics.Metrics;
using VmmKit.TestSupport;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Tests.SystemLevel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>The meter is process-wide: these tests run alone so that no other test's processor adds measurements.</summary>
[CollectionDefinition(nameof(EmulatorMeterCollection), DisableParallelization = true)]
public sealed class EmulatorMeterCollection;

/// <summary>The <c>VmmKit.Vmx.Emulator</c> meter's instruments, as the package README lists them, seen by a <see cref="MeterListener"/>.</summary>
[Collection(nameof(EmulatorMeterCollection))]
public sealed class MetricsTests
{
    [Fact]
    public void The_instrument_names_are_the_documented_ones()
    {
        Assert.Equal("VmmKit.Vmx.Emulator", EmulatorMetrics.MeterName);
        Assert.Equal("vmmkit.emulator.exits", EmulatorMetrics.Exits);
        Assert.Equal("vmmkit.emulator.instructions_retired", EmulatorMetrics.InstructionsRetired);
        MeterCapture.AssertDocumented("Vmx.Emulator", EmulatorMetrics.MeterName, EmulatorMetrics.Exits, EmulatorMetrics.InstructionsRetired);
        Assert.Equal("io_instruction", EmulatorMetrics.ReasonName((uint)VmxExitReason.IoInstruction));
        Assert.Equal("entry_failure_invalid_guest_state", EmulatorMetrics.ReasonName((uint)VmxExitReason.EntryFailureInvalidGuestState));
    }

    [Fact]
    public void Exits_are_counted_by_reason_and_instructions_as_retired()
    {
        using var counts = new MeterCapture(EmulatorMetrics.MeterName);

        using var g = new VmcsGuest(32, a =>
        {
            a.mov(eax, 1);
            a.cpuid();
            a.mov(ecx, 5);
            a.hlt();
        });
        VmExit exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Cpuid, exit.Reason);
        g.Advance(exit);
        Assert.Equal(VmxExitReason.Hlt, g.Cpu.Run(g.Vmcs).Reason);
        g.Vmcs.Write(VmcsField.HostCr4, 0);
        Assert.Equal(VmExitOutcome.VmFailValid, g.Cpu.Run(g.Vmcs).Outcome); // VMfailValid is not an exit

        lock (counts)
        {
            Assert.Equal(1, counts["vmmkit.emulator.exits reason=cpuid"]);
            Assert.Equal(1, counts["vmmkit.emulator.exits reason=hlt"]);
            Assert.Equal((long)g.Cpu.InstructionsRetired, counts["vmmkit.emulator.instructions_retired"]);
            Assert.Equal(3, counts.Count);
        }
    }
}
