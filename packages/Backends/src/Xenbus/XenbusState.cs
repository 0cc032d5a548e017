namespace VmmKit.Backends.Xenbus;

/// <summary><c>enum xenbus_state</c> (xen/io/xenbus.h): the state each end of a split device writes to its <c>state</c> node.</summary>
public enum XenbusState
{
    /// <summary><c>XenbusStateUnknown</c>.</summary>
    Unknown = 0,
    /// <summary><c>XenbusStateInitialising</c>.</summary>
    Initialising = 1,
    /// <summary><c>XenbusStateInitWait</c>: finished early initialisation, waiting for the other end's details.</summary>
    InitWait = 2,
    /// <summary><c>XenbusStateInitialised</c>: the frontend published its ring and event channel.</summary>
    Initialised = 3,
    /// <summary><c>XenbusStateConnected</c>.</summary>
    Connected = 4,
    /// <summary><c>XenbusStateClosing</c>: the device is being closed down.</summary>
    Closing = 5,
    /// <summary><c>XenbusStateClosed</c>.</summary>
    Closed = 6,
    /// <summary><c>XenbusStateReconfiguring</c>.</summary>
    Reconfiguring = 7,
    /// <summary><c>XenbusStateReconfigured</c>.</summary>
    Reconfigured = 8,
}
