using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>One guest-memory store made by translated code in lock-step mode.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WriteLogEntry
{
    /// <summary>Host address written.</summary>
    public ulong Host;
    /// <summary>The bytes there before the store (zero-extended).</summary>
    public ulong Old;
    /// <summary>Store size in bytes (1, 2, 4, 8).</summary>
    public ulong Size;
}

/// <summary>
/// The lock-step store log filled by translated code (layout fixed: the count, then the entries — see
/// BlockCompiler.LogStore). A block stores at most once per instruction, so <see cref="Capacity"/> covers the largest block.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct WriteLog
{
    /// <summary>Entries per log: one store per instruction at most.</summary>
    public const int Capacity = Engine.BlockDecoder.MaxInstructions;

    /// <summary>Entries used.</summary>
    public ulong Count;

    /// <summary>Entry <paramref name="k"/> of the log at <paramref name="log"/>.</summary>
    public static WriteLogEntry* Entry(WriteLog* log, int k) => (WriteLogEntry*)((byte*)log + 8) + k;

    /// <summary>Bytes to allocate for a log.</summary>
    public static int Bytes => 8 + Capacity * sizeof(WriteLogEntry);
}
