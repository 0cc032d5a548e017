namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// Fills a hypercall page as Xen's <c>vmx_init_hypercall_page()</c> does: 128 stubs of 32 bytes,
/// stub i being <c>mov eax, i; vmcall; ret</c>; the stub of <c>__HYPERVISOR_iret</c> (23), which HVM
/// guests may not use, is <c>ud2</c>.
/// </summary>
internal static class HypercallPageWriter
{
    /// <summary>Bytes per stub.</summary>
    public const int StubSize = 32;

    private const int IretHypercall = 23;

    /// <summary>Writes the page into <paramref name="page"/> (4096 bytes).</summary>
    public static void Write(Span<byte> page)
    {
        page.Fill(0xCC);                                  // int3 between stubs
        for (int i = 0; i < page.Length / StubSize; i++)
        {
            var stub = page.Slice(i * StubSize, StubSize);
            stub[0] = 0xB8;                               // mov eax, imm32
            BitConverter.TryWriteBytes(stub[1..5], i);
            stub[5] = 0x0F; stub[6] = 0x01; stub[7] = 0xC1;   // vmcall
            stub[8] = 0xC3;                               // ret
        }

        page[IretHypercall * StubSize] = 0x0F;
        page[(IretHypercall * StubSize) + 1] = 0x0B;      // ud2
    }
}
