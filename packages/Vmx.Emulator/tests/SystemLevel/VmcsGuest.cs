using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// A small VMCS harness for the system-level tests: 1 MiB of guest RAM at guest-physical 0 through an EPT, a PVH
/// (32-bit, paging off) or long-mode VMCS from <see cref="VmcsBuilder"/>, code assembled with Iced at any address,
/// and helpers that play the hypervisor (advance RIP, answer RDMSR/WRMSR of EFER like the reference hypervisor).
/// </summary>
internal sealed unsafe class VmcsGuest : IDisposable
{
    public const ulong RamPages = 256;
    public readonly MachineMemory Memory = new(16UL << 20);
    public readonly EptTables Ept;
    public readonly MachineFrameNumber First;
    public readonly Vmcs Vmcs = new();
    public readonly EmulatedProcessor Cpu;

    /// <summary>Page tables for long mode: PML4 0x10000, PDPT 0x11000, PD 0x12000 identity-mapping 2 MiB with one large page.</summary>
    public const ulong Pml4 = 0x10000;

    public VmcsGuest(int bitness, Action<Assembler>? code = null, ulong entry = 0x1000)
    {
        Ept = new EptTables(Memory, new FrameOwner(1));
        First = Memory.AllocateContiguous(new FrameOwner(1), RamPages);
        Ept.Map(new GuestPhysicalAddress(0), First, RamPages, EptAccess.Read | EptAccess.Write | EptAccess.Execute);
        if (code != null) Assemble(bitness, entry, code);
        Cpu = new EmulatedProcessor(Memory);
        Write64(0x10000, 0x11000UL | 7);
        Write64(0x11000, 0x12000UL | 7);
        Write64(0x12000, 0x87UL);
        if (bitness == 64)
        {
            VmcsBuilder.SetLongModeGuest(Vmcs, EmulatedCapabilities.Create(), Ept.Pointer, Pml4, entry, 0x80000);
        }
        else
        {
            VmcsBuilder.SetPvh32Guest(Vmcs, EmulatedCapabilities.Create(), Ept.Pointer, (uint)entry);
            Vmcs.Write(VmcsField.GuestRsp, 0x80000);
        }
        VmcsBuilder.SetHostState(Vmcs, EmulatedHostState.Default);
    }

    /// <summary>Assembles <paramref name="code"/> for <paramref name="bitness"/> at <paramref name="address"/>.</summary>
    public void Assemble(int bitness, ulong address, Action<Assembler> code)
    {
        var a = new Assembler(bitness);
        code(a);
        var w = new Writer();
        a.Assemble(w, address);
        Write(address, w.Bytes.ToArray());
    }

    public void Write(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        byte* host = Memory.GetFramePointer(First) + gpa;
        bytes.CopyTo(new Span<byte>(host, bytes.Length));
    }

    public void Write64(ulong gpa, ulong value) => Write(gpa, BitConverter.GetBytes(value));

    public ulong Read64(ulong gpa) => *(ulong*)(Memory.GetFramePointer(First) + gpa);

    public void Advance(VmExit exit) => Vmcs.Write(VmcsField.GuestRip, Vmcs.Read(VmcsField.GuestRip) + exit.InstructionLength);

    /// <summary>Sets bits in a control field.</summary>
    public void SetControl(VmcsField field, ulong bits) => Vmcs.Write(field, Vmcs.Read(field) | bits);

    /// <summary>
    /// A GDT at 0x5000 (null, 0x08 64-bit code, 0x10 32-bit code, 0x18 data, 0x20 16-bit code, 0x28 user 64-bit code,
    /// 0x30 user data, 0x38 user 32-bit code) and its pseudo-descriptor at 0x6000 (limit, base) for LGDT.
    /// </summary>
    public void WriteGdt()
    {
        ulong[] gdt =
        [
            0,
            0x00AF_9A00_0000_FFFF, // 0x08 64-bit code, DPL 0
            0x00CF_9A00_0000_FFFF, // 0x10 32-bit code
            0x00CF_9200_0000_FFFF, // 0x18 data
            0x0000_9A00_0000_FFFF, // 0x20 16-bit code
            0x00AF_FA00_0000_FFFF, // 0x28 64-bit code, DPL 3
            0x00CF_F200_0000_FFFF, // 0x30 data, DPL 3
            0x00CF_FA00_0000_FFFF, // 0x38 32-bit code, DPL 3
        ];
        for (int k = 0; k < gdt.Length; k++) Write64(0x5000 + (ulong)k * 8, gdt[k]);
        Write(0x6000, BitConverter.GetBytes((ushort)(gdt.Length * 8 - 1)));
        Write(0x6002, BitConverter.GetBytes(0x5000UL));
    }

    /// <summary>Runs, playing the reference hypervisor for RDMSR/WRMSR of EFER and PAT exits, until another exit.</summary>
    public VmExit RunHandlingMsrs()
    {
        while (true)
        {
            VmExit e = Cpu.Run(Vmcs);
            ref GuestRegisters r = ref Cpu.Registers;
            uint msr = (uint)r.Rcx;
            VmcsField? field = msr switch { 0xC000_0080 => VmcsField.GuestIa32Efer, 0x277 => VmcsField.GuestIa32Pat, _ => null };
            if (field == null || (e.Reason != VmxExitReason.Rdmsr && e.Reason != VmxExitReason.Wrmsr)) return e;
            if (e.Reason == VmxExitReason.Rdmsr)
            {
                ulong v = Vmcs.Read(field.Value);
                r.Rax = (uint)v;
                r.Rdx = v >> 32;
            }
            else
            {
                ulong v = ((r.Rdx & 0xFFFF_FFFF) << 32) | (uint)r.Rax;
                if (field == VmcsField.GuestIa32Efer) v = (v & ~0x400UL) | (Vmcs.Read(VmcsField.GuestIa32Efer) & 0x400);
                Vmcs.Write(field.Value, v);
            }
            Advance(e);
        }
    }

    public void Dispose()
    {
        Cpu.Dispose();
        Ept.Dispose();
        Memory.Dispose();
    }

    private sealed class Writer : CodeWriter
    {
        public readonly List<byte> Bytes = new();

        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}
