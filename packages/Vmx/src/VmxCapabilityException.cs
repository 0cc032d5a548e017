namespace VmmKit.Vmx;

/// <summary>Thrown by <see cref="VmxCapabilities"/> when a desired control set cannot be programmed on the processor.</summary>
public sealed class VmxCapabilityException : Exception
{
    /// <summary>Creates the exception.</summary>
    public VmxCapabilityException(string controlName, uint unsatisfiableBits, string bitNames)
        : base($"{controlName}: the processor cannot satisfy bits 0x{unsatisfiableBits:x8} ({bitNames}).")
    {
        ControlName = controlName;
        UnsatisfiableBits = unsatisfiableBits;
    }

    /// <summary>Creates the exception with a message.</summary>
    public VmxCapabilityException() : base("The processor cannot satisfy the desired VMX controls.") => ControlName = "";

    /// <summary>Creates the exception with a message.</summary>
    public VmxCapabilityException(string message) : base(message) => ControlName = "";

    /// <summary>Creates the exception with a message and inner exception.</summary>
    public VmxCapabilityException(string message, Exception innerException) : base(message, innerException) => ControlName = "";

    /// <summary>Which control field failed (e.g. "pin-based VM-execution controls").</summary>
    public string ControlName { get; }

    /// <summary>The control bits that could not be honoured.</summary>
    public uint UnsatisfiableBits { get; }
}
