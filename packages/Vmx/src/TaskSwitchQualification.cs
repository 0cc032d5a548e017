namespace VmmKit.Vmx;

/// <summary>Exit qualification for task switches, exit reason 9 (SDM Vol. 3C §28.2.1, Table 28-2).</summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct TaskSwitchQualification(ulong Value)
{
    /// <summary>Bits 15:0: the selector of the task-state segment being switched to.</summary>
    public ushort TssSelector => (ushort)Value;

    /// <summary>Bits 31:30: the source of the task switch.</summary>
    public TaskSwitchSource Source => (TaskSwitchSource)((Value >> 30) & 3);

    /// <inheritdoc/>
    public override string ToString() => $"task switch to 0x{TssSelector:x} by {Source}";
}
