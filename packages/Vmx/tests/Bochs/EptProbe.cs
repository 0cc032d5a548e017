namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>The one guest access an EPT differential case makes at its target guest-physical address.</summary>
internal enum EptProbe
{
    /// <summary>A 4-byte load (<c>mov eax, [target]</c>).</summary>
    Read,

    /// <summary>A 4-byte store (<c>mov dword [target], 0xF4F4F4F4</c>).</summary>
    Write,

    /// <summary>An instruction fetch: <c>jmp eax</c> to the target, whose bytes are HLT.</summary>
    Fetch,

    /// <summary>A read-modify-write (<c>add dword [target], 0</c>).</summary>
    ReadModifyWrite,
}
