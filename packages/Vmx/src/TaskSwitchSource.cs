namespace VmmKit.Vmx;

/// <summary>Bits 31:30 of the task-switch exit qualification (SDM Vol. 3C §28.2.1, Table 28-2).</summary>
public enum TaskSwitchSource
{
    /// <summary>CALL instruction.</summary>
    Call = 0,
    /// <summary>IRET instruction.</summary>
    Iret = 1,
    /// <summary>JMP instruction.</summary>
    Jmp = 2,
    /// <summary>Task gate in the IDT.</summary>
    TaskGateInIdt = 3,
}
