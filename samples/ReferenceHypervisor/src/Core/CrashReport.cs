using System.Text;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The diagnostic dump of a crashed domain (Xen prints a similar one for <c>domain_crash</c>):
/// why, the exit, the registers and the code at RIP, disassembled with Iced.
/// </summary>
internal static class CrashReport
{
    /// <summary>Builds the report text.</summary>
    public static string Build(Domain domain, VirtualCpu? vcpu, string why)
    {
        var sb = new StringBuilder();
        sb.Append("(XEN) domain_crash: d").Append(domain.Id).Append(" (").Append(domain.Name).Append("): ").AppendLine(why);
        if (vcpu is null)
            return sb.ToString();

        var vmcs = vcpu.Vmcs;
        ref var r = ref vcpu.Registers;
        sb.Append("(XEN) d").Append(domain.Id).Append('v').Append(vcpu.Id).Append(" last exit: ").AppendLine(vcpu.LastExit.ToString());
        if (vcpu.LastExit.Reason == VmxExitReason.EptViolation)
            sb.Append("(XEN)   ept violation: ").AppendLine(vcpu.LastExit.EptViolation.ToString());
        ulong rip = vmcs.Read(VmcsField.GuestRip);
        sb.AppendLine($"(XEN)   rip {rip:x16}  rsp {vmcs.Read(VmcsField.GuestRsp):x16}  rflags {vmcs.Read(VmcsField.GuestRflags):x8}");
        sb.AppendLine($"(XEN)   rax {r.Rax:x16}  rbx {r.Rbx:x16}  rcx {r.Rcx:x16}");
        sb.AppendLine($"(XEN)   rdx {r.Rdx:x16}  rsi {r.Rsi:x16}  rdi {r.Rdi:x16}");
        sb.AppendLine($"(XEN)   rbp {r.Rbp:x16}  r8  {r.R8:x16}  r9  {r.R9:x16}");
        sb.AppendLine($"(XEN)   cr0 {vmcs.Read(VmcsField.GuestCr0):x8}  cr3 {vmcs.Read(VmcsField.GuestCr3):x8}  cr4 {vmcs.Read(VmcsField.GuestCr4):x8}  efer {vmcs.Read(VmcsField.GuestIa32Efer):x}");
        sb.AppendLine($"(XEN)   cs {vmcs.Read(VmcsField.GuestCsSelector):x4} (ar {vmcs.Read(VmcsField.GuestCsAccessRights):x4})  ss {vmcs.Read(VmcsField.GuestSsSelector):x4}  " +
                      $"idtr {vmcs.Read(VmcsField.GuestIdtrBase):x}/{vmcs.Read(VmcsField.GuestIdtrLimit):x}  gdtr {vmcs.Read(VmcsField.GuestGdtrBase):x}/{vmcs.Read(VmcsField.GuestGdtrLimit):x}");
        sb.AppendLine($"(XEN)   instructions retired {vcpu.InstructionsRetired}, hypercall operations {vcpu.HypercallOperations}, exits {vcpu.ExitCount}");
        AppendCode(sb, domain, vcpu, rip);
        return sb.ToString();
    }

    private static void AppendCode(StringBuilder sb, Domain domain, VirtualCpu vcpu, ulong rip)
    {
        Span<byte> code = stackalloc byte[32];
        if ((GuestCr0(vcpu) & VmcsBuilder.Cr0Pg) != 0 || !domain.Physical.TryRead(new GuestPhysicalAddress(rip), code, out _))
        {
            sb.AppendLine("(XEN)   code at rip: not readable");
            return;
        }

        var decoder = Iced.Intel.Decoder.Create(vcpu.GuestMode == Hypercall.GuestX86Mode.Long64 ? 64 : 32, new ByteArrayCodeReader(code.ToArray()), rip);
        var formatter = new IntelFormatter();
        var output = new StringOutput();
        sb.AppendLine("(XEN)   code at rip:");
        for (int i = 0; i < 4 && decoder.IP < rip + (ulong)code.Length; i++)
        {
            var instr = decoder.Decode();
            if (instr.IsInvalid)
                break;
            formatter.Format(instr, output);
            sb.AppendLine($"(XEN)     {instr.IP:x8}  {output.ToStringAndReset()}");
        }
    }

    private static ulong GuestCr0(VirtualCpu vcpu) => vcpu.Vmcs.Read(VmcsField.GuestCr0);
}
