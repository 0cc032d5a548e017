namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>What a handler returns to the dispatch loop (plain ints so handlers stay <c>delegate*</c>-friendly).</summary>
internal static class ExecStatus
{
    /// <summary>Retired; fall through to the next instruction of the block.</summary>
    public const int Continue = 0;
    /// <summary>Retired; the handler set RIP (taken or not-taken branch); the block ends.</summary>
    public const int Jump = 1;
    /// <summary>Not retired: an exception or VM exit is pending in <see cref="Core.Event"/>; RIP = this instruction.</summary>
    public const int Event = 2;
    /// <summary>Not retired, partly done (a REP string chunk): RIP = this instruction, run it again.</summary>
    public const int Restart = 3;
}

/// <summary>Kind of event that stops execution.</summary>
internal enum EventKind
{
    /// <summary>No event.</summary>
    None = 0,
    /// <summary>A guest exception (fault or trap) to deliver or to exit on.</summary>
    Exception,
    /// <summary>A VM exit caused by an instruction or a memory access.</summary>
    VmExit,
    /// <summary>HLT without "HLT exiting": the instruction retired and the processor enters the HLT activity state.</summary>
    Halt,
}

/// <summary>Basic exit reasons the engine raises (SDM Vol. 3D Appendix C).</summary>
internal static class BasicExitReason
{
    public const uint ExceptionOrNmi = 0;
    public const uint ExternalInterrupt = 1;
    public const uint TripleFault = 2;
    public const uint Cpuid = 10;
    public const uint Hlt = 12;
    public const uint Invd = 13;
    public const uint Rdpmc = 15;
    public const uint Rdtsc = 16;
    public const uint Vmcall = 18;
    public const uint Invlpg = 14;
    public const uint CrAccess = 28;
    public const uint MovDr = 29;
    public const uint IoInstruction = 30;
    public const uint Rdmsr = 31;
    public const uint Wrmsr = 32;
    public const uint Pause = 40;
    /// <summary>LGDT, LIDT, SGDT or SIDT with "descriptor-table exiting".</summary>
    public const uint GdtrIdtrAccess = 46;
    public const uint EptViolation = 48;
    public const uint EptMisconfiguration = 49;
    public const uint PreemptionTimer = 52;
    public const uint Wbinvd = 54;
    public const uint Xsetbv = 55;
    public const uint Rdtscp = 51;
    public const uint Invpcid = 58;
}

/// <summary>Exception vectors (SDM Vol. 3A §6.3.1, table 6-1).</summary>
internal static class ExceptionVector
{
    public const int DE = 0;
    public const int DB = 1;
    public const int BP = 3;
    public const int OF = 4;
    public const int BR = 5;
    public const int UD = 6;
    public const int NM = 7;
    public const int DF = 8;
    public const int TS = 10;
    public const int NP = 11;
    public const int SS = 12;
    public const int GP = 13;
    public const int PF = 14;
    public const int MF = 16;
    public const int AC = 17;
    public const int XM = 19;
}

/// <summary>The event that stopped the last instruction (exception or exit information).</summary>
internal struct PendingEvent
{
    /// <summary>What happened.</summary>
    public EventKind Kind;
    /// <summary>Exception vector (Kind = Exception).</summary>
    public int Vector;
    /// <summary>Whether <see cref="ErrorCode"/> is pushed.</summary>
    public bool HasErrorCode;
    /// <summary>Exception error code.</summary>
    public uint ErrorCode;
    /// <summary>Basic exit reason (Kind = VmExit).</summary>
    public uint ExitReason;
    /// <summary>Exit qualification.</summary>
    public ulong Qualification;
    /// <summary>Guest-physical address (EPT exits).</summary>
    public ulong GuestPhysical;
    /// <summary>Guest-linear address (EPT violations, #PF CR2).</summary>
    public ulong GuestLinear;
    /// <summary>Length of the instruction that caused an instruction exit.</summary>
    public int InstructionLength;
    /// <summary>
    /// Interruption type for an exception that exits (SDM Vol. 3C table 25-17): 3 hardware exception (default 0 means
    /// the same), 5 privileged software exception (INT1), 6 software exception (INT3, INTO). Software ones report
    /// <see cref="InstructionLength"/>.
    /// </summary>
    public int InterruptionType;
    /// <summary>VM-exit instruction information (SDM Vol. 3C §28.2.5) for exits that report it.</summary>
    public uint InstructionInformation;
}
