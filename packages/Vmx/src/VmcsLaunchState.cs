namespace VmmKit.Vmx;

/// <summary>The launch state of a VMCS (SDM Vol. 3C §25.1): VMLAUNCH needs a clear VMCS, VMRESUME a launched one.</summary>
public enum VmcsLaunchState
{
    /// <summary>The state after VMCLEAR.</summary>
    Clear = 0,
    /// <summary>The state after a successful VMLAUNCH.</summary>
    Launched = 1,
}
