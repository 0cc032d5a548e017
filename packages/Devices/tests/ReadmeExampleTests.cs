using System.Text;

namespace VmmKit.Devices.Tests;

/// <summary>The README's example, kept compiling, with its printed output checked.</summary>
public class ReadmeExampleTests
{
    private sealed class ConsoleSink(StringBuilder output) : ISerialSink
    {
        public void Write(byte value) => output.Append((char)value);
    }

    private sealed class ManualClock : IGuestClock
    {
        public ulong Tsc { get; set; }
    }

    [Fact]
    public void Prints_what_the_readme_says()
    {
        var output = new StringBuilder();
        var io = new IoManager();
        var console = new ConsoleSink(output);
        io.PortIo.TryRegister(Uart16550.Com1Range, new Uart16550(console));
        io.PortIo.TryRegister(DebugConsolePort.DefaultRange, new DebugConsolePort(console));
        foreach (char c in "hi\n")
            io.WritePort(0x3F8, 1, c);
        output.AppendLine($"LSR = 0x{io.ReadPort(0x3FD, 1):x2}, unclaimed port 0x80 reads 0x{io.ReadPort(0x80, 1):x2}");

        var clock = new ManualClock();
        var apic = new LocalApic(apicId: 0, isBootstrapProcessor: true, clock);
        apic.WriteMsr(LocalApic.ApicBaseMsr, LocalApic.DefaultBaseAddress | LocalApic.ApicBaseEnable | LocalApic.ApicBaseExtd);
        apic.WriteMsr(0x80F, 0x1FF);
        apic.WriteMsr(0x83E, 0xB);
        apic.WriteMsr(0x832, 0xEC);
        apic.WriteMsr(0x838, 1000);
        output.AppendLine($"timer fires at TSC {apic.NextTimerInterrupt}");

        clock.Tsc = 1000;
        if (apic.HasPendingInterrupt)
            output.AppendLine($"inject vector 0x{apic.AcknowledgeInterrupt():x}");
        output.AppendLine(apic.WriteMsr(0x80B, 1).ToString());

        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        int start = readme.IndexOf("It prints:\n\n```\n", StringComparison.Ordinal) + "It prints:\n\n```\n".Length;
        string expected = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Equal(expected, output.ToString().Replace("\r\n", "\n"));
    }
}
