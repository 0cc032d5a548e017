namespace VmmKit.EventChannel;

/// <summary>Which event channel ABI a domain uses.</summary>
public enum EventChannelAbiKind
{
    /// <summary>The 2-level ABI over <c>shared_info</c> (the default, and again after EVTCHNOP_reset).</summary>
    TwoLevel,
    /// <summary>The FIFO ABI, from the first successful EVTCHNOP_init_control.</summary>
    Fifo,
}
