namespace VmmKit.Vmx;

/// <summary>
/// The guest general-purpose registers a hypervisor saves on VM exit and restores before VM entry.
/// The layout (fifteen 64-bit fields in x86 encoding order without RSP) is a contract that VmmKit.Hypercall's
/// <c>HypercallRegisters.View</c> relies on to dispatch a hypercall on these registers without copying them.
/// RSP, RIP and RFLAGS are not here: VM exits store them in the VMCS guest-state area (SDM Vol. 3C §28.3).
/// </summary>
public struct GuestRegisters
{
    /// <summary>RAX.</summary>
    public ulong Rax;
    /// <summary>RCX.</summary>
    public ulong Rcx;
    /// <summary>RDX.</summary>
    public ulong Rdx;
    /// <summary>RBX.</summary>
    public ulong Rbx;
    /// <summary>RBP.</summary>
    public ulong Rbp;
    /// <summary>RSI.</summary>
    public ulong Rsi;
    /// <summary>RDI.</summary>
    public ulong Rdi;
    /// <summary>R8.</summary>
    public ulong R8;
    /// <summary>R9.</summary>
    public ulong R9;
    /// <summary>R10.</summary>
    public ulong R10;
    /// <summary>R11.</summary>
    public ulong R11;
    /// <summary>R12.</summary>
    public ulong R12;
    /// <summary>R13.</summary>
    public ulong R13;
    /// <summary>R14.</summary>
    public ulong R14;
    /// <summary>R15.</summary>
    public ulong R15;

    /// <summary>
    /// A general-purpose register by its x86 encoding number (0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX, 5 = RBP, 6 = RSI, 7 = RDI, 8–15 = R8–R15),
    /// as exit qualifications and instruction information name them. Number 4 (RSP) lives in the VMCS and reads as 0 here.
    /// </summary>
    public ulong this[int number]
    {
        readonly get => number switch
        {
            0 => Rax, 1 => Rcx, 2 => Rdx, 3 => Rbx, 5 => Rbp, 6 => Rsi, 7 => Rdi,
            8 => R8, 9 => R9, 10 => R10, 11 => R11, 12 => R12, 13 => R13, 14 => R14, 15 => R15,
            _ => 0,
        };
        set
        {
            switch (number)
            {
                case 0: Rax = value; break;
                case 1: Rcx = value; break;
                case 2: Rdx = value; break;
                case 3: Rbx = value; break;
                case 5: Rbp = value; break;
                case 6: Rsi = value; break;
                case 7: Rdi = value; break;
                case 8: R8 = value; break;
                case 9: R9 = value; break;
                case 10: R10 = value; break;
                case 11: R11 = value; break;
                case 12: R12 = value; break;
                case 13: R13 = value; break;
                case 14: R14 = value; break;
                case 15: R15 = value; break;
                default: break;
            }
        }
    }
}
