using System.Buffers.Binary;
using System.Text;
using VmmKit.Ept;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;

namespace VmmKit.Vmx.Emulator.Benchmarks;

/// <summary>
/// A minimal PVH host around <see cref="EmulatedProcessor"/>: loads an ELF32 guest at its physical addresses,
/// passes a hvm_start_info with a command line in EBX, and handles the exits of a guest that finds no Xen
/// (CPUID returns zeros, port 0xE9 prints, port 0xF4 exits, HLT stops).
/// </summary>
public sealed unsafe class PvhWorkload : IDisposable
{
    private const ulong RamPages = 4096; // 16 MiB
    private const ulong StartInfoAddress = 0x1000, CmdlineAddress = 0x2000;
    private readonly MachineMemory _memory = new(64UL << 20);
    private readonly EptTables _ept;
    private readonly MachineFrameNumber _first;
    private readonly byte[] _elf;
    private readonly string _cmdline;
    private readonly StringBuilder _output = new();
    private EmulatedProcessor _cpu = null!;
    private Vmcs _vmcs = null!;
    private ExecutionTier _tier;

    /// <summary>Prepares the machine; call <see cref="Reset"/> before each run.</summary>
    public PvhWorkload(byte[] elf, string cmdline)
    {
        _elf = elf;
        _cmdline = cmdline;
        _ept = new EptTables(_memory, new FrameOwner(1));
        _first = _memory.AllocateContiguous(new FrameOwner(1), RamPages);
        _ept.Map(new GuestPhysicalAddress(0), _first, RamPages, EptAccess.Read | EptAccess.Write | EptAccess.Execute);
        Reset();
    }

    /// <summary>Text the guest printed on port 0xE9.</summary>
    public string Output => _output.ToString();

    /// <summary>Value the guest wrote to port 0xF4 (isa-debug-exit), if any.</summary>
    public uint? ExitCode { get; private set; }

    /// <summary>The processor's execution tier (kept across <see cref="Reset"/>).</summary>
    public ExecutionTier Tier
    {
        get => _tier;
        set
        {
            _tier = value;
            _cpu.ExecutionTier = value;
        }
    }

    /// <summary>Instructions retired by the guest.</summary>
    public ulong InstructionsRetired => _cpu.InstructionsRetired;

    /// <summary>Instructions retired by translated code (0 in the interpreter tier).</summary>
    public long TranslatedInstructions => _cpu.TranslatedInstructions;

    /// <summary>Reloads the image and a fresh processor.</summary>
    public void Reset()
    {
        byte* ram = _memory.GetFramePointer(_first);
        new Span<byte>(ram, (int)(RamPages * 4096)).Clear();
        ReadOnlySpan<byte> e = _elf;
        uint entry = BinaryPrimitives.ReadUInt32LittleEndian(e[0x18..]);
        uint phoff = BinaryPrimitives.ReadUInt32LittleEndian(e[0x1C..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(e[0x2A..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(e[0x2C..]);
        for (int k = 0; k < phnum; k++)
        {
            ReadOnlySpan<byte> ph = e[(int)(phoff + (uint)(k * phentsize))..];
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != 1) continue; // PT_LOAD
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
            uint paddr = BinaryPrimitives.ReadUInt32LittleEndian(ph[12..]);
            uint filesz = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
            e.Slice((int)offset, (int)filesz).CopyTo(new Span<byte>(ram + paddr, (int)filesz));
        }
        // struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h): magic, version, flags, nr_modules,
        // modlist_paddr, cmdline_paddr, ...
        var si = new Span<byte>(ram + StartInfoAddress, 56);
        BinaryPrimitives.WriteUInt32LittleEndian(si, 0x336ec578u);
        BinaryPrimitives.WriteUInt32LittleEndian(si[4..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(si[24..], CmdlineAddress);
        Encoding.ASCII.GetBytes(_cmdline + "\0").CopyTo(new Span<byte>(ram + CmdlineAddress, _cmdline.Length + 1));

        _cpu?.Dispose();
        _cpu = new EmulatedProcessor(_memory);
        _cpu.ExecutionTier = _tier;
        _vmcs = new Vmcs();
        VmcsBuilder.SetPvh32Guest(_vmcs, EmulatedCapabilities.Create(), _ept.Pointer, entry);
        VmcsBuilder.SetHostState(_vmcs, EmulatedHostState.Default);
        _cpu.Registers.Rbx = StartInfoAddress;
        _output.Clear();
        ExitCode = null;
    }

    /// <summary>Runs the guest until it stops; returns the last exit.</summary>
    public VmExit Run()
    {
        while (true)
        {
            VmExit exit = _cpu.Run(_vmcs);
            switch (exit.Reason)
            {
                case VmxExitReason.IoInstruction:
                    {
                        IoInstructionQualification io = exit.IoInstruction;
                        if (io.IsString) return exit;
                        if (io.IsIn) _cpu.Registers.Rax |= 0xFFFF_FFFFUL >> (32 - 8 * io.Size);
                        else if (io.Port == 0xE9) _output.Append((char)(byte)_cpu.Registers.Rax);
                        else if (io.Port == 0xF4)
                        {
                            ExitCode = (uint)_cpu.Registers.Rax;
                            return exit;
                        }
                        break;
                    }
                case VmxExitReason.Cpuid:
                    _cpu.Registers.Rax = _cpu.Registers.Rbx = _cpu.Registers.Rcx = _cpu.Registers.Rdx = 0;
                    break;
                default:
                    return exit;
            }
            _vmcs.Write(VmcsField.GuestRip, _vmcs.Read(VmcsField.GuestRip) + exit.InstructionLength);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _cpu?.Dispose();
        _ept.Dispose();
        _memory.Dispose();
    }
}
