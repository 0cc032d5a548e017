using VmmKit.Ept;

namespace VmmKit.Hypercall;

/// <summary>
/// The hypercall transfer page an HVM/PVH guest asks for by writing the guest-physical address
/// of a page to the MSR that CPUID leaf <c>base + 2</c> names (<see cref="MsrIndex"/>). Guests
/// then call <c>hypercall_page + 32 * number</c> instead of encoding VMCALL themselves, so the
/// same kernel runs on Intel and AMD.
/// </summary>
/// <remarks>
/// Layout, as Xen writes it (xen/arch/x86/domain.c <c>init_hypercall_page</c> and
/// xen/arch/x86/hvm/vmx/vmx.c <c>vmx_init_hypercall_page</c>): the page is first filled with
/// <c>int3</c> (0xCC); each of the 128 32-byte stubs is <c>mov $nr, %eax</c> (B8 imm32),
/// <c>vmcall</c> (0F 01 C1) or <c>vmmcall</c> (0F 01 D9), <c>ret</c> (C3) — 9 bytes, the rest
/// stays 0xCC — except stub 23, <c>__HYPERVISOR_iret</c>, which HVM guests must not use: it is
/// <c>ud2</c> (0F 0B).
/// </remarks>
public static class HypercallPage
{
    /// <summary>Size of the page.</summary>
    public const int Size = Page.PageSize;

    /// <summary>Bytes per stub: stub <c>n</c> starts at <c>32 * n</c>.</summary>
    public const int StubSize = 32;

    /// <summary>Number of stubs in the page.</summary>
    public const int StubCount = Size / StubSize;

    /// <summary>The filler Xen puts everywhere outside the stubs: <c>int3</c>.</summary>
    public const byte Filler = 0xCC;

    /// <summary>
    /// The MSR a guest writes to install the page (EBX of CPUID leaf <c>base + 2</c>): 0x40000000,
    /// or 0x40000200 when Viridian is enabled (not modelled here).
    /// </summary>
    public const uint MsrIndex = 0x40000000;

    /// <summary>Writes the page contents into <paramref name="page"/> (at least <see cref="Size"/> bytes).</summary>
    /// <param name="page">The destination, e.g. the host mapping of the guest frame.</param>
    /// <param name="instruction">VMCALL for Intel, VMMCALL for AMD.</param>
    public static void Write(Span<byte> page, HypercallInstruction instruction = HypercallInstruction.Vmcall)
    {
        if (page.Length < Size)
            throw new ArgumentException($"the hypercall page is {Size} bytes", nameof(page));
        page = page[..Size];
        page.Fill(Filler);
        byte modrm = instruction == HypercallInstruction.Vmcall ? (byte)0xC1 : (byte)0xD9;
        for (int nr = 0; nr < StubCount; nr++)
        {
            Span<byte> stub = page.Slice(nr * StubSize, StubSize);
            if (nr == (int)HypercallNumber.Iret)
            {
                stub[0] = 0x0F; // ud2
                stub[1] = 0x0B;
                continue;
            }
            stub[0] = 0xB8; // mov imm32, %eax
            stub[1] = (byte)nr;
            stub[2] = 0;
            stub[3] = 0;
            stub[4] = 0;
            stub[5] = 0x0F; // vmcall / vmmcall
            stub[6] = 0x01;
            stub[7] = modrm;
            stub[8] = 0xC3; // ret
        }
    }

    /// <summary>
    /// Decodes a guest's write to <see cref="MsrIndex"/>: bits 63:12 are the guest frame, bits
    /// 11:0 the page index, of which Xen supports only 0 (<c>guest_wrmsr_xen</c>).
    /// </summary>
    /// <param name="msrValue">The value written.</param>
    /// <param name="frame">The guest frame to fill.</param>
    /// <returns>False for a non-zero page index: the WRMSR raises #GP(0) in the guest.</returns>
    public static bool TryDecodeMsrWrite(ulong msrValue, out GuestFrameNumber frame)
    {
        frame = new GuestFrameNumber(msrValue >> Page.PageShift);
        return (msrValue & Page.PageOffsetMask) == 0;
    }

    /// <summary>
    /// Handles a guest's WRMSR to <see cref="MsrIndex"/>: decodes the frame and writes the page into
    /// it through the domain's EPT.
    /// </summary>
    /// <param name="memory">The domain's guest-physical memory.</param>
    /// <param name="msrValue">The value written.</param>
    /// <param name="instruction">VMCALL for Intel, VMMCALL for AMD.</param>
    /// <returns>False when the page index is not 0 or the frame is not writable guest RAM: inject #GP(0), as Xen does.</returns>
    public static bool TryInstall(GuestPhysicalMemory memory, ulong msrValue, HypercallInstruction instruction = HypercallInstruction.Vmcall)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (!TryDecodeMsrWrite(msrValue, out GuestFrameNumber frame))
            return false;
        Span<byte> contents = stackalloc byte[Size];
        Write(contents, instruction);
        return memory.TryWrite(frame.Address, contents, out _);
    }
}
