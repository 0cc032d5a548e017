using System.Runtime.InteropServices;
using System.Text;
using VmmKit.Boot;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>packages/Boot/README.md's example on the demo guest prints what the README says.</summary>
public class BootReadmeExampleTests
{
    private sealed class RamWriter(byte[] bytes) : IGuestPhysicalWriter
    {
        public byte[] Bytes { get; } = bytes;
        public bool TryWrite(ulong address, ReadOnlySpan<byte> data) =>
            address <= (ulong)Bytes.Length && (ulong)data.Length <= (ulong)Bytes.Length - address
            && data.TryCopyTo(Bytes.AsSpan((int)address));
    }

    [Fact]
    public void Prints_what_the_readme_says_for_the_demo_guest()
    {
        var output = new StringBuilder();
        byte[] kernel = DemoGuest.Build();
        Assert.True(ElfImage.TryParse(kernel, out var image, out string error), error);
        var ram = new RamWriter(new byte[16 << 20]);
        Assert.True(PvhLoader.TryLoad(image!, kernel, "console=hvc0", [new PvhModule("initrd"u8.ToArray(), "rdinit=/init")],
            memorySize: 16 << 20, ram, out PvhBootInfo boot, out error), error);
        var info = MemoryMarshal.Read<HvmStartInfo>(ram.Bytes.AsSpan((int)boot.StartInfoAddress));
        var module = MemoryMarshal.Read<HvmModlistEntry>(ram.Bytes.AsSpan((int)info.ModlistPaddr));
        output.AppendLine($"entry 0x{boot.Entry:x}, hvm_start_info at 0x{boot.StartInfoAddress:x}");
        output.AppendLine($"version {info.Version}, {info.NrModules} module at 0x{module.Paddr:x} ({module.Size} bytes), {info.MemmapEntries} e820 entry");

        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "BootREADME.md"));
        const string marker = "it prints:\n\n```\n";
        int start = readme.IndexOf(marker, StringComparison.Ordinal) + marker.Length;
        Assert.Equal(readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)], output.ToString());
    }
}
