using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Bits of <see cref="HandlerEntry.Flags"/>.</summary>
internal static class HandlerFlags
{
    /// <summary>The block ends after this instruction (exits, mode changes, serializing instructions).</summary>
    public const byte EndsBlock = 1;
}

/// <summary>One row of the handler table.</summary>
internal unsafe struct HandlerEntry
{
    /// <summary>The handler.</summary>
    public delegate*<Core, Instr*, int> Handler;
    /// <summary>Copied to <see cref="Instr.Sub"/>.</summary>
    public byte Sub;
    /// <summary><see cref="HandlerFlags"/>.</summary>
    public byte Flags;
    /// <summary>When non-zero, overrides <see cref="Instr.OpSize"/>.</summary>
    public byte Size;
}

/// <summary>
/// The handler table, indexed by Iced <see cref="Code"/>. Every entry starts as #UD; the
/// <c>Register*</c> partial methods (one per instruction group, one file each) fill it in.
/// </summary>
internal static unsafe partial class HandlerTable
{
    /// <summary>Entries indexed by (int)Code.</summary>
    public static readonly HandlerEntry[] Entries = Build();

    private static HandlerEntry[] Build()
    {
        var table = new HandlerEntry[CodeCount()];
        for (int k = 0; k < table.Length; k++)
        {
            table[k].Handler = &Undefined;
        }
        RegisterGeneral(table);
        RegisterSse(table);
        return table;
    }

    private static int CodeCount()
    {
        int max = 0;
        foreach (Code c in Enum.GetValues<Code>()) max = Math.Max(max, (int)c);
        return max + 1;
    }

    /// <summary>Registers <paramref name="handler"/> for <paramref name="code"/>.</summary>
    public static void Set(HandlerEntry[] table, Code code, delegate*<Core, Instr*, int> handler, byte sub = 0, byte flags = 0, byte size = 0)
    {
        ref HandlerEntry e = ref table[(int)code];
        e.Handler = handler;
        e.Sub = sub;
        e.Flags = flags;
        e.Size = size;
    }

    /// <summary>The general-purpose instruction set (Handlers/*.cs).</summary>
    static partial void RegisterGeneral(HandlerEntry[] table);

    /// <summary>The SSE/SSE2 subset (src/Sse/, owned by the SSE work).</summary>
    static partial void RegisterSse(HandlerEntry[] table);

    /// <summary>Default handler: anything not implemented raises #UD in the guest.</summary>
    public static int Undefined(Core c, Instr* i) => c.RaiseUD();
}
