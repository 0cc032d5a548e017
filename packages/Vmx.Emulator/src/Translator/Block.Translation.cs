namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Per-block state of the translating tier (src/Translator/).</summary>
internal sealed partial class Block
{
    /// <summary>Runs of this block seen by the translator before it was translated.</summary>
    public int HotCount;
    /// <summary>Entry point of the translated code (<c>int F(CpuState*, long budget)</c>, see BlockCompiler), or 0.</summary>
    public nint NativeCode;
    /// <summary>Where chained blocks enter <see cref="NativeCode"/> (after its prologue), or 0.</summary>
    public nint NativeEntry;
    /// <summary>Leading instructions the translated code covers; -1 once the block is known not to be translatable.</summary>
    public int NativeCovered;
    /// <summary>Stack size (Core.StackSize) the translated code was generated for.</summary>
    public int NativeStackSize;
    /// <summary>32-bit code compiled for ES, CS, SS and DS bases of 0 (run only while they are, see BlockCompiler).</summary>
    public bool NativeFlat;
}
