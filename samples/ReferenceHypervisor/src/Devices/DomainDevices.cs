using VmmKit.Devices;

namespace VmmKit.ReferenceHypervisor.Devices;

/// <summary>
/// The devices every domain gets on its port-I/O bus: the COM1 16550 UART (0x3F8-0x3FF) and Bochs'
/// port 0xE9 debug console, both printing to the domain console. There is no I/O APIC, so the UART is polled (no
/// interrupt line); each vCPU's local APIC is per vCPU, not on this bus (<see cref="VcpuApic"/>).
/// </summary>
internal static class DomainDevices
{
    /// <summary>Creates the buses of a domain whose output goes to <paramref name="console"/>.</summary>
    public static IoManager Create(DomainConsole console)
    {
        var io = new IoManager();
        var sink = new ConsoleSink(console);
        if (!io.PortIo.TryRegister(Uart16550.Com1Range, new Uart16550(sink))
            || !io.PortIo.TryRegister(DebugConsolePort.DefaultRange, new DebugConsolePort(sink)))
            throw new InvalidOperationException("the fixed device ranges overlap");
        return io;
    }

    private sealed class ConsoleSink(DomainConsole console) : ISerialSink
    {
        public void Write(byte value) => console.Write(value);
    }
}
