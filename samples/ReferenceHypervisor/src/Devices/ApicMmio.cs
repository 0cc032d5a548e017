using Iced.Intel;
using VmmKit.Devices;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Devices;

/// <summary>
/// The xAPIC register page (SDM Vol. 3A §11.4.1): no RAM backs it, so a guest access is an EPT violation (exit reason
/// 48) whose guest-physical address falls in the page. As Xen's hvm_emulate_one does for MMIO, the instruction at
/// CS:RIP is decoded and completed here — the MOV forms compilers use for registers (load to a GPR, store from a GPR
/// or an immediate; 1, 2, 4 or 8 bytes) — and RIP moves past it. Any other instruction touching the page crashes the
/// domain with a message (never a host exception).
/// </summary>
internal static class ApicMmio
{
    /// <summary>Handles <paramref name="exit"/> when it is an access to the vCPU's APIC page; false otherwise.</summary>
    public static bool TryHandle(VirtualCpu vcpu, in VmExit exit, out ExitAction action)
    {
        action = ExitAction.Resume;
        var apic = vcpu.Apic;
        ulong gpa = exit.GuestPhysicalAddress;
        ulong page = apic.BaseAddress;
        if (apic.Mode != ApicMode.XApic || gpa < page || gpa >= page + LocalApic.PageSize)
            return false;

        var vmcs = vcpu.Vmcs;
        int bitness = vcpu.GuestMode switch
        {
            GuestX86Mode.Long64 => 64,
            GuestX86Mode.Protected32 => 32,
            _ => 16,
        };
        ulong rip = vmcs.Read(VmcsField.GuestRip);
        ulong csBase = bitness == 64 ? 0 : vmcs.Read(VmcsField.GuestCsBase);
        var fetch = t_fetch ??= new Fetch();
        int length = Fetch.MaxLength;
        // The instruction may end before a page the guest has not mapped: fetch what can be read.
        while (length > 0 && !vcpu.LinearMemory.TryRead(csBase + rip, fetch.Bytes.AsSpan(0, length)))
            length--;
        fetch.Reset(length);
        var decoder = bitness switch { 64 => fetch.Decoder64, 32 => fetch.Decoder32, _ => fetch.Decoder16 };
        decoder.IP = rip;
        decoder.Decode(out Instruction insn);
        bool supported = !insn.IsInvalid && insn.Mnemonic == Mnemonic.Mov && insn.MemorySize.GetSize() is 1 or 2 or 4 or 8
            && ((insn.Op0Kind == OpKind.Memory && (insn.Op1Kind is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32
                    or OpKind.Immediate32to64 || (insn.Op1Kind == OpKind.Register && insn.Op1Register.IsGPR())))
                || (insn.Op1Kind == OpKind.Memory && insn.Op0Kind == OpKind.Register && insn.Op0Register.IsGPR()));
        if (!supported)
        {
            vcpu.Domain.Crash(vcpu, $"unsupported access to the APIC page at gpa 0x{gpa:x}: {insn} at rip 0x{rip:x}");
            action = ExitAction.Stop;
            return true;
        }

        int size = insn.MemorySize.GetSize();
        ulong offset = gpa - page;
        Span<byte> data = stackalloc byte[8];
        if (insn.Op0Kind == OpKind.Memory)
        {
            ulong value = insn.Op1Kind == OpKind.Register ? ReadRegister(vcpu, insn.Op1Register) : insn.GetImmediate(1);
            for (int k = 0; k < size; k++)
                data[k] = (byte)(value >> (8 * k));
            apic.Write(page, offset, data[..size]);
        }
        else
        {
            // Bytes past the page's end are not the APIC's (it leaves them alone): as Xen's emulator splits an access
            // at pages, they read as unclaimed MMIO, all ones; a write drops them.
            data.Fill(0xFF);
            apic.Read(page, offset, data[..size]);
            ulong value = 0;
            for (int k = 0; k < size; k++)
                value |= (ulong)data[k] << (8 * k);
            WriteRegister(vcpu, insn.Op0Register, value);
        }

        // An EPT violation reports no instruction length (SDM Vol. 3C §29.2.4): the decoded one moves RIP.
        vcpu.AdvanceRip(exit with { InstructionLength = (uint)insn.Length });
        return true;
    }

    /// <summary>The instruction bytes and decoders, reused (a vCPU's exits are handled on its own thread): nothing is allocated per access.</summary>
    [ThreadStatic]
    private static Fetch? t_fetch;

    private sealed class Fetch : CodeReader
    {
        public const int MaxLength = 15;
        public readonly byte[] Bytes = new byte[MaxLength];
        public readonly Decoder Decoder16, Decoder32, Decoder64;
        private int _length, _position;

        public Fetch()
        {
            Decoder16 = Decoder.Create(16, this);
            Decoder32 = Decoder.Create(32, this);
            Decoder64 = Decoder.Create(64, this);
        }

        public void Reset(int length)
        {
            _length = length;
            _position = 0;
        }

        public override int ReadByte() => _position < _length ? Bytes[_position++] : -1;
    }

    private static ulong ReadRegister(VirtualCpu vcpu, Register register)
    {
        ulong full = Gpr(vcpu, register.GetFullRegister());
        return register is Register.AH or Register.CH or Register.DH or Register.BH ? (full >> 8) & 0xFF : full;
    }

    // The x86 rules for a register destination: 32-bit writes zero-extend, 8- and 16-bit writes merge (SDM Vol. 1 §3.4.1.1).
    private static void WriteRegister(VirtualCpu vcpu, Register register, ulong value)
    {
        Register full = register.GetFullRegister();
        ulong old = Gpr(vcpu, full);
        ulong merged = register.GetSize() switch
        {
            8 => value,
            4 => (uint)value,
            2 => (old & ~0xFFFFul) | (ushort)value,
            _ when register is Register.AH or Register.CH or Register.DH or Register.BH => (old & ~0xFF00ul) | ((value & 0xFF) << 8),
            _ => (old & ~0xFFul) | (byte)value,
        };
        int number = full - Register.RAX;
        if (number == 4)
            vcpu.Vmcs.Write(VmcsField.GuestRsp, merged);
        else
            vcpu.Registers[number] = merged;
    }

    private static ulong Gpr(VirtualCpu vcpu, Register full)
    {
        int number = full - Register.RAX;
        return number == 4 ? vcpu.Vmcs.Read(VmcsField.GuestRsp) : vcpu.Registers[number];
    }
}
