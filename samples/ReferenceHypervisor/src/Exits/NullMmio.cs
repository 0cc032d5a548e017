using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// What Xen does with an access to guest-physical memory that nothing backs in a domain without a device model (PVH):
/// the gfn has no p2m entry, so it is <c>p2m_mmio_dm</c>, the access is emulated, and with no ioreq server the null
/// handler answers it (xen/arch/x86/hvm/emulate.c <c>null_ops</c>): reads return all ones, writes are dropped. Guests
/// probe that way (GRUB's cbfs module reads the coreboot pointer at 0xfffffffc). Only plain loads and stores are
/// emulated (MOV, MOVZX, MOVSX/MOVSXD); anything else still crashes the domain.
/// </summary>
internal static class NullMmio
{
    /// <summary>Completes the faulting instruction when it is a plain load or store to unbacked memory; false otherwise.</summary>
    public static bool TryComplete(VirtualCpu vcpu, in VmExit exit)
    {
        if (vcpu.Domain.Ept.TryLookup(new GuestFrameNumber(exit.GuestPhysicalAddress >> Page.PageShift), out _, out _))
            return false; // backed memory with the wrong rights: not MMIO
        var vmcs = vcpu.Vmcs;
        int bitness = vcpu.GuestMode switch { GuestX86Mode.Long64 => 64, GuestX86Mode.Protected32 => 32, _ => 16 };
        ulong rip = vmcs.Read(VmcsField.GuestRip);
        ulong linear = vmcs.Read(VmcsField.GuestCsBase) + rip;
        Span<byte> code = stackalloc byte[15];
        var memory = vcpu.LinearMemory;
        int length = code.Length;
        while (length > 0 && !memory.TryRead(linear, code[..length]))
            length = Math.Min(length - 1, (int)(Page.PageSize - (linear & (Page.PageSize - 1)))); // the instruction may end at a page end
        if (length == 0)
            return false;
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(code[..length].ToArray()), rip);
        decoder.Decode(out Instruction ins);
        if (ins.IsInvalid || ins.OpCount != 2)
            return false;
        if (ins.Op0Kind == OpKind.Memory && ins.Mnemonic == Mnemonic.Mov)
        {
            // A store: dropped.
        }
        else if (ins.Op0Kind == OpKind.Register && ins.Op1Kind == OpKind.Memory
            && ins.Mnemonic is Mnemonic.Mov or Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd)
        {
            Register dest = ins.Op0Register;
            Register full = dest.GetFullRegister();
            if (!full.IsGPR64() || full == Register.RSP || dest is Register.AH or Register.CH or Register.DH or Register.BH)
                return false;
            int number = full - Register.RAX;
            int size = dest.GetSize();
            ulong ones = ins.Mnemonic == Mnemonic.Movzx ? (ins.MemorySize.GetSize() == 1 ? 0xFFUL : 0xFFFFUL) : ulong.MaxValue;
            ulong old = vcpu.Registers[number];
            vcpu.Registers[number] = size switch
            {
                8 => ones,
                4 => ones & 0xFFFF_FFFF, // a 32-bit destination clears bits 63:32
                2 => (old & ~0xFFFFUL) | (ones & 0xFFFF),
                _ => (old & ~0xFFUL) | (ones & 0xFF),
            };
        }
        else
        {
            return false;
        }

        ulong next = rip + (ulong)ins.Length;
        vmcs.Write(VmcsField.GuestRip, bitness == 64 ? next : next & 0xFFFF_FFFF);
        return true;
    }
}
