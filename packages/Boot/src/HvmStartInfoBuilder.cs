using System.Runtime.InteropServices;
using System.Text;
using VmmKit.Hypercall;

namespace VmmKit.Boot;

/// <summary>
/// Lays out one contiguous guest-physical area holding <c>struct hvm_start_info</c> version 1
/// (xen/include/public/arch-x86/hvm/start_info.h) and everything it points to, in this order:
/// the start info, the <c>hvm_modlist_entry</c> array, the <c>hvm_memmap_table_entry</c> array (the
/// e820 map), the command line and each module's command line (NUL-terminated UTF-8). Addresses
/// inside the area are absolute guest-physical addresses computed from the base passed to
/// <see cref="TryBuild"/>; an empty command line is passed as address 0, as Xen does.
/// </summary>
public sealed class HvmStartInfoBuilder
{
    /// <summary>The longest command line accepted, in bytes without the terminating NUL.</summary>
    public const int MaxCommandLine = 4096;

    /// <summary>The most modules accepted.</summary>
    public const int MaxModules = 64;

    /// <summary>The most memory-map entries accepted (Linux's E820_MAX_ENTRIES_ZEROPAGE).</summary>
    public const int MaxMemoryMapEntries = 128;

    private readonly List<(ulong Address, ulong Size, string CommandLine)> _modules = [];
    private readonly List<HvmMemmapTableEntry> _memoryMap = [];

    /// <summary>The kernel command line (<c>cmdline_paddr</c>); empty for none.</summary>
    public string CommandLine { get; set; } = "";

    /// <summary>The ACPI RSDP's guest-physical address (<c>rsdp_paddr</c>), 0 when the guest has no ACPI.</summary>
    public ulong RsdpAddress { get; set; }

    /// <summary>The <c>SIF_*</c> flags (xen/include/public/xen.h), 0 for an unprivileged guest.</summary>
    public uint Flags { get; set; }

    /// <summary>Modules added so far.</summary>
    public int ModuleCount => _modules.Count;

    /// <summary>Memory-map entries added so far.</summary>
    public int MemoryMapCount => _memoryMap.Count;

    /// <summary>Adds a module already placed in guest memory at <paramref name="address"/>.</summary>
    /// <param name="address">Guest-physical address of the module's first byte.</param>
    /// <param name="size">Its size in bytes.</param>
    /// <param name="commandLine">Its command line, empty for none.</param>
    public void AddModule(ulong address, ulong size, string commandLine = "") => _modules.Add((address, size, commandLine));

    /// <summary>Adds one e820 entry (<c>hvm_memmap_table_entry</c>); entries are written in the order added.</summary>
    /// <param name="address">Base guest-physical address of the region.</param>
    /// <param name="size">Size of the region in bytes.</param>
    /// <param name="type">The region's type (the e820 numbering).</param>
    public void AddMemory(ulong address, ulong size, HvmMemmapType type) =>
        _memoryMap.Add(new HvmMemmapTableEntry { Addr = address, Size = size, Type = (uint)type });

    /// <summary>
    /// Builds the area for guest-physical <paramref name="baseAddress"/>. Fails (with a one-line
    /// reason) on a command line or module count over the limits, or an area that would wrap the
    /// 64-bit address space.
    /// </summary>
    /// <param name="baseAddress">Where the area will be written; the start info is at this address (the guest's EBX).</param>
    /// <param name="area">The bytes to write at <paramref name="baseAddress"/>.</param>
    /// <param name="error">Why the build failed; empty on success.</param>
    /// <returns>True on success.</returns>
    public bool TryBuild(ulong baseAddress, out byte[] area, out string error)
    {
        area = [];
        byte[] cmdline = Encoding.UTF8.GetBytes(CommandLine);
        if (cmdline.Length > MaxCommandLine)
            return Fail($"command line longer than {MaxCommandLine} bytes", out error);
        if (_modules.Count > MaxModules)
            return Fail($"more than {MaxModules} modules", out error);
        if (_memoryMap.Count > MaxMemoryMapEntries)
            return Fail($"more than {MaxMemoryMapEntries} memory map entries", out error);
        var modCmdlines = new byte[_modules.Count][];
        for (int i = 0; i < modCmdlines.Length; i++)
        {
            modCmdlines[i] = Encoding.UTF8.GetBytes(_modules[i].CommandLine);
            if (modCmdlines[i].Length > MaxCommandLine)
                return Fail($"module command line longer than {MaxCommandLine} bytes", out error);
        }

        int startInfoSize = Marshal.SizeOf<HvmStartInfo>();
        int modlistOff = startInfoSize;
        int memmapOff = modlistOff + (_modules.Count * Marshal.SizeOf<HvmModlistEntry>());
        int cmdlineOff = memmapOff + (_memoryMap.Count * Marshal.SizeOf<HvmMemmapTableEntry>());
        int size = cmdlineOff + cmdline.Length + 1;
        foreach (var c in modCmdlines)
            size += c.Length + 1;
        if (baseAddress + (ulong)size < baseAddress)
            return Fail("hvm_start_info area wraps the address space", out error);

        area = new byte[size];
        var span = area.AsSpan();
        var info = new HvmStartInfo
        {
            Magic = HvmStartInfo.MagicValue,
            Version = HvmStartInfo.Version1,
            Flags = Flags,
            NrModules = (uint)_modules.Count,
            ModlistPaddr = _modules.Count == 0 ? 0 : baseAddress + (ulong)modlistOff,
            CmdlinePaddr = cmdline.Length == 0 ? 0 : baseAddress + (ulong)cmdlineOff,
            RsdpPaddr = RsdpAddress,
            MemmapPaddr = _memoryMap.Count == 0 ? 0 : baseAddress + (ulong)memmapOff,
            MemmapEntries = (uint)_memoryMap.Count,
        };
        MemoryMarshal.Write(span, in info);

        cmdline.CopyTo(span[cmdlineOff..]);
        int strOff = cmdlineOff + cmdline.Length + 1;
        var modlist = MemoryMarshal.Cast<byte, HvmModlistEntry>(span.Slice(modlistOff, memmapOff - modlistOff));
        for (int i = 0; i < _modules.Count; i++)
        {
            modlist[i] = new HvmModlistEntry
            {
                Paddr = _modules[i].Address,
                Size = _modules[i].Size,
                CmdlinePaddr = modCmdlines[i].Length == 0 ? 0 : baseAddress + (ulong)strOff,
            };
            modCmdlines[i].CopyTo(span[strOff..]);
            strOff += modCmdlines[i].Length + 1;
        }

        var memmap = MemoryMarshal.Cast<byte, HvmMemmapTableEntry>(span.Slice(memmapOff, cmdlineOff - memmapOff));
        for (int i = 0; i < _memoryMap.Count; i++)
            memmap[i] = _memoryMap[i];

        error = "";
        return true;
    }

    private static bool Fail(string message, out string error)
    {
        error = message;
        return false;
    }
}
