using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>Byte-string memory access for the x87 operands (2 to 10 bytes) and the save areas (14 to 576 bytes).</summary>
internal static unsafe class FpuMemory
{
    /// <summary>Reads <paramref name="buffer"/>.Length bytes at linear <paramref name="lin"/>; false when it faults (event raised).</summary>
    public static bool Read(Core c, ulong lin, Span<byte> buffer)
    {
        int k = 0;
        for (; k + 8 <= buffer.Length; k += 8)
        {
            if (!c.Read((lin + (ulong)k) & c.LinearMask, 8, out ulong v))
                return false;
            BitConverter.TryWriteBytes(buffer[k..], v);
        }
        for (; k < buffer.Length; k++)
        {
            if (!c.Read((lin + (ulong)k) & c.LinearMask, 1, out ulong v))
                return false;
            buffer[k] = (byte)v;
        }
        return true;
    }

    /// <summary>Checks that <paramref name="length"/> bytes at <paramref name="lin"/> can be written (at most two pages).</summary>
    public static bool ProbeWrite(Core c, ulong lin, int length) => c.Probe(lin, length, MemoryAccess.Write);

    /// <summary>Writes <paramref name="data"/> at <paramref name="lin"/>; call <see cref="ProbeWrite"/> first so nothing is half-written.</summary>
    public static bool Write(Core c, ulong lin, ReadOnlySpan<byte> data)
    {
        int k = 0;
        for (; k + 8 <= data.Length; k += 8)
        {
            if (!c.Write((lin + (ulong)k) & c.LinearMask, 8, BitConverter.ToUInt64(data[k..])))
                return false;
        }
        for (; k < data.Length; k++)
        {
            if (!c.Write((lin + (ulong)k) & c.LinearMask, 1, data[k]))
                return false;
        }
        return true;
    }
}
