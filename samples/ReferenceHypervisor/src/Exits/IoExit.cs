using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 30, I/O instruction (unconditional I/O exiting, SDM Vol. 3C §26.1.3; the
/// qualification format is Table 28-5). Port 0xE9 is Bochs/QEMU's debug console, 0x3F8-0x3FF the
/// COM1 UART; other ports read as all ones and ignore writes, like an empty ISA bus.
/// </summary>
internal static class IoExit
{
    /// <summary>String I/O elements handled per exit; a longer REP is resumed by re-executing the instruction.</summary>
    public const int MaxStringElementsPerExit = 4096;

    private const ulong RflagsDf = 1ul << 10;

    /// <summary>Performs the IN/OUT (or one batch of INS/OUTS) and skips the instruction when it completed.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        var q = exit.IoInstruction;
        if (q.IsString)
            return HandleString(vcpu, in exit, q);

        ref var r = ref vcpu.Registers;
        if (q.IsIn)
        {
            uint value = In(vcpu.Domain, q.Port, q.Size);
            ulong mask = q.Size == 4 ? 0xFFFF_FFFFul : (1ul << (8 * q.Size)) - 1;
            // A 32-bit IN zero-extends into RAX; 8/16-bit INs leave the other bits (SDM Vol. 2A, IN).
            r.Rax = q.Size == 4 ? value : (r.Rax & ~mask) | (value & mask);
        }
        else
        {
            Out(vcpu.Domain, q.Port, q.Size, (uint)r.Rax);
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    private static ExitAction HandleString(VirtualCpu vcpu, in VmExit exit, IoInstructionQualification q)
    {
        ref var r = ref vcpu.Registers;
        bool wide = vcpu.GuestMode == GuestX86Mode.Long64;
        ulong addrMask = wide ? ulong.MaxValue : 0xFFFF_FFFF;
        ulong count = q.IsRep ? r.Rcx & addrMask : 1;
        long step = (vcpu.Vmcs.Read(VmcsField.GuestRflags) & RflagsDf) != 0 ? -q.Size : q.Size;
        Span<byte> element = stackalloc byte[4];
        int done = 0;
        while (count != 0 && done < MaxStringElementsPerExit)
        {
            // OUTS reads DS:[RSI], INS writes ES:[RDI]; flat segments (PVH), so the offset is the linear address.
            if (q.IsIn)
            {
                BitConverter.TryWriteBytes(element, In(vcpu.Domain, q.Port, q.Size));
                if (!vcpu.LinearMemory.TryWrite(r.Rdi & addrMask, element[..q.Size]))
                    return Fault(vcpu);
                r.Rdi = (r.Rdi + (ulong)step) & addrMask;
            }
            else
            {
                if (!vcpu.LinearMemory.TryRead(r.Rsi & addrMask, element[..q.Size]))
                    return Fault(vcpu);
                Out(vcpu.Domain, q.Port, q.Size, BitConverter.ToUInt32(element));
                r.Rsi = (r.Rsi + (ulong)step) & addrMask;
            }

            count--;
            done++;
            if (q.IsRep)
                r.Rcx = (r.Rcx & ~addrMask) | count;
        }

        if (count == 0)
            vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    private static ExitAction Fault(VirtualCpu vcpu)
    {
        vcpu.InjectGeneralProtection();
        return ExitAction.Resume;
    }

    // Every port goes through the domain's port-I/O bus (VmmKit.Devices): COM1, port 0xE9; the rest floats high.
    private static uint In(Domain domain, ushort port, int size) => domain.Io.ReadPort(port, size);

    private static void Out(Domain domain, ushort port, int size, uint value) => domain.Io.WritePort(port, size, value);
}
