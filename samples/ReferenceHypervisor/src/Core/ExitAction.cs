namespace VmmKit.ReferenceHypervisor;

/// <summary>What the run loop does after an exit handler returns.</summary>
internal enum ExitAction
{
    /// <summary>VMRESUME the same vCPU.</summary>
    Resume,

    /// <summary>End this vCPU's time slice; it stays runnable.</summary>
    Yield,

    /// <summary>The vCPU waits for an event.</summary>
    Block,

    /// <summary>The domain stopped (shut down or crashed); never run it again.</summary>
    Stop,
}
