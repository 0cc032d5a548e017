using System.Buffers.Binary;
using VmmKit.Ept;

namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>
/// The machine memory of one Bochs boot of EPT differential cases, and the replay of each case through
/// <see cref="EptWalker"/>. Every case has its own PML4 and PDPT (and PD and PT when its leaf is below them);
/// PML4E 0 and PDPTE 0 lead to a shared PD and PT that map the code page at <see cref="CodeGpa"/>, PDPTE 1 leads to
/// the case's target. The target's data frame is filled with HLT (0xF4), so a fetch that translates halts there and
/// a store writes HLTs again. Each case's code (at its own offset in the code page) sets EBX to the address of a HLT,
/// makes its one access, and halts; after an EPT violation the harness resumes the guest at EBX. A paged case's target
/// page is a guest page directory instead, walked by the guest's paging (SDM Vol. 3A §4.3).
/// </summary>
internal sealed class EptDifferentialBatch : IDisposable
{
    public const uint CodeGpa = 0x1000;
    private const ulong TargetPdpteGpa = 0x4000_0000; // PDPTE 1
    private const int PdeIndex = 1;
    private const int PteIndex = 5;
    private const int SnippetSize = 32;
    private const ulong Rwx = 7;
    private const ulong WriteBackLeaf = 6UL << 3;
    private const ulong LargePage = 0x80;

    private readonly FrameOwner owner = new(1);
    private readonly MachineFrameNumber dataFrame;

    /// <summary>CR0 (PE | ET | PG) and CR4 (PSE) of a paged case's guest.</summary>
    public const uint PagedCr0 = 0x8000_0011, PagedCr4 = 0x10;

    /// <summary>One case as laid out in this batch.</summary>
    /// <param name="Case">The case.</param>
    /// <param name="Eptp">Its EPTP.</param>
    /// <param name="Rip">Guest-physical address of its code.</param>
    /// <param name="Target">Guest-physical address it accesses.</param>
    /// <param name="Slots">Machine addresses of the path's entries, PML4E first, for the levels the walk can use.</param>
    /// <param name="Cr3">The guest's CR3 in a paged case (its page directory, the target page); 0 otherwise.</param>
    public sealed record Prepared(EptDifferentialCase Case, EptPointer Eptp, uint Rip, uint Target, uint[] Slots, uint Cr3);

    public MachineMemory Memory { get; }

    public IReadOnlyList<Prepared> Cases { get; }

    public EptDifferentialBatch(IReadOnlyList<EptDifferentialCase> cases)
    {
        if (cases.Count * SnippetSize > 4096)
            throw new ArgumentException("too many cases for one code page", nameof(cases));
        Memory = new MachineMemory(32ul << 20);
        // Keep every frame above the harness's own low memory (the first 2 MiB), as HarnessGuest does.
        Memory.AllocateContiguous(new FrameOwner(0x7FF0), 512);
        var codeFrame = Memory.AllocateFrame(owner);
        dataFrame = Memory.AllocateFrame(owner);
        Memory.GetFrame(dataFrame).Fill(0xF4);
        var codePt = Memory.AllocateFrame(owner);
        var codePd = Memory.AllocateFrame(owner);
        Put(codePt, 1, codeFrame.Address | WriteBackLeaf | Rwx);
        Put(codePd, 0, codePt.Address | Rwx);

        var prepared = new List<Prepared>();
        Span<byte> code = Memory.GetFrame(codeFrame);
        for (int k = 0; k < cases.Count; k++)
        {
            var c = cases[k];
            var p4 = Memory.AllocateFrame(owner);
            var p3 = Memory.AllocateFrame(owner);
            MachineFrameNumber p2 = c.LeafLevel < 3 ? Memory.AllocateFrame(owner) : default;
            MachineFrameNumber p1 = c.LeafLevel < 2 ? Memory.AllocateFrame(owner) : default;
            if (c.Paged && c.LeafLevel != 1)
                throw new ArgumentException("a paged case has a 4 KiB leaf", nameof(cases));
            ulong data = dataFrame.Address;
            if (c.Paged)
            {
                // The guest's page directory: identity 4 MiB pages.
                var pageDirectory = Memory.AllocateFrame(owner);
                for (uint i = 0; i < 1024; i++)
                    BinaryPrimitives.WriteUInt32LittleEndian(Memory.GetFrame(pageDirectory)[(int)(4 * i)..], (i << 22) | c.GuestPdeFlags);
                data = pageDirectory.Address;
            }
            var wellFormed = new EptPath(
                p3.Address | Rwx,
                c.LeafLevel == 3 ? LargePage | WriteBackLeaf | Rwx : p2.Address | Rwx,
                c.LeafLevel == 2 ? (data & ~0x1F_FFFFUL) | LargePage | WriteBackLeaf | Rwx : c.LeafLevel < 2 ? p1.Address | Rwx : 0,
                c.LeafLevel == 1 ? data | WriteBackLeaf | Rwx : 0);
            var path = c.Craft(wellFormed);
            Put(p4, 0, path.Pml4e);
            Put(p3, 0, codePd.Address | Rwx);
            Put(p3, 1, path.Pdpte);
            var slots = new List<uint> { (uint)p4.Address, (uint)p3.Address + 8 };
            if (c.LeafLevel < 3)
            {
                Put(p2, PdeIndex, path.Pde);
                slots.Add((uint)p2.Address + 8 * PdeIndex);
            }
            if (c.LeafLevel < 2)
            {
                Put(p1, PteIndex, path.Pte);
                slots.Add((uint)p1.Address + 8 * PteIndex);
            }

            ulong pageSize = 1UL << (12 + 9 * (c.LeafLevel - 1));
            ulong page = c.LeafLevel switch
            {
                1 => TargetPdpteGpa + ((ulong)PdeIndex << 21) + ((ulong)PteIndex << 12),
                2 => TargetPdpteGpa + ((ulong)PdeIndex << 21),
                _ => TargetPdpteGpa,
            };
            ulong target = c.AtPageEnd ? page + pageSize - 2 : page + (data & (pageSize - 1)) + 0x10;
            uint rip = CodeGpa + (uint)(k * SnippetSize);
            uint cr3 = c.Paged ? (uint)page : 0;
            if (c.Paged)
                target = CodeGpa + 0x800;
            WriteSnippet(code.Slice(k * SnippetSize, SnippetSize), rip, (uint)target, c.Access);
            prepared.Add(new Prepared(c, EptPointer.Create(p4, c.AccessedDirty), rip, (uint)target, [.. slots], cr3));
        }
        Cases = prepared;
    }

    // mov ebx, H; then the access; H: hlt.
    private static void WriteSnippet(Span<byte> at, uint rip, uint target, EptProbe access)
    {
        var bytes = new List<byte>();
        void B(byte b) => bytes.Add(b);
        void D(uint v)
        {
            for (int i = 0; i < 4; i++)
                bytes.Add((byte)(v >> (8 * i)));
        }
        int accessLength = SnippetAccessLength(access);
        B(0xBB);
        D(rip + 5 + (uint)accessLength);
        switch (access)
        {
            case EptProbe.Read:
                B(0xA1); // mov eax, [moffs32]
                D(target);
                break;
            case EptProbe.Write:
                B(0xC7); // mov dword [disp32], imm32
                B(0x05);
                D(target);
                D(0xF4F4_F4F4);
                break;
            case EptProbe.ReadModifyWrite:
                B(0x83); // add dword [disp32], imm8
                B(0x05);
                D(target);
                B(0);
                break;
            default:
                B(0xB8); // mov eax, imm32; jmp eax
                D(target);
                B(0xFF);
                B(0xE0);
                break;
        }
        B(0xF4);
        bytes.ToArray().CopyTo(at);
    }

    /// <summary>Bytes of the access instruction(s) in a case's code, which start after the 5-byte <c>mov ebx</c>.</summary>
    public static int SnippetAccessLength(EptProbe access) => access switch
    {
        EptProbe.Read => 5,
        EptProbe.Write => 10,
        EptProbe.ReadModifyWrite => 7,
        _ => 7,
    };

    private void Put(MachineFrameNumber table, int index, ulong entry) =>
        BinaryPrimitives.WriteUInt64LittleEndian(Memory.GetFrame(table)[(8 * index)..], entry);

    /// <summary>The value now in the 8-byte word at machine address <paramref name="address"/>.</summary>
    public ulong Read(uint address) =>
        BinaryPrimitives.ReadUInt64LittleEndian(Memory.GetFrame(new MachineFrameNumber(address >> 12))[(int)(address & 0xFFF)..]);

    /// <summary>
    /// What <see cref="EptWalker"/> says the case does, walking the same tables as Bochs (and setting the same
    /// accessed/dirty flags): the fetch of the case's code, then its access (both halves of an access at a page end).
    /// A paged case first walks the guest's paging with <see cref="GuestPageWalker"/> over
    /// <see cref="GuestPhysicalMemory"/>, whose EPT faults are those of the guest's paging-structure accesses.
    /// </summary>
    public (EptTranslationStatus Status, uint Gpa, uint Gla, EptViolationQualification Qualification) Replay(Prepared p)
    {
        var access = p.Case.Access switch
        {
            EptProbe.Read => EptAccess.Read,
            EptProbe.Write => EptAccess.Write,
            EptProbe.ReadModifyWrite => EptAccess.Read | EptAccess.Write,
            _ => EptAccess.Execute,
        };
        var result = Access(p, p.Rip, EptAccess.Execute);
        if (result.Status != EptTranslationStatus.Success)
            return result;
        result = Access(p, p.Target, access);
        if (result.Status != EptTranslationStatus.Success || !p.Case.AtPageEnd)
            return result;
        return Access(p, p.Target + 2, access);
    }

    private (EptTranslationStatus Status, uint Gpa, uint Gla, EptViolationQualification Qualification) Access(Prepared p, uint linear, EptAccess access)
    {
        uint gpa = linear;
        if (p.Case.Paged)
        {
            var memory = new GuestPhysicalMemory(Memory, p.Eptp);
            var registers = new GuestPagingRegisters(PagedCr0, p.Cr3, PagedCr4, 0, 2);
            var kind = access == EptAccess.Execute ? GuestPagingAccess.Execute
                : (access & EptAccess.Write) != 0 ? GuestPagingAccess.Write : GuestPagingAccess.Read;
            var paging = GuestPageWalker.Translate(memory, registers, linear, kind, GuestPagingPrivilege.Supervisor,
                out GuestPhysicalAddress translated, out _, out GuestMemoryFault fault);
            if (paging == GuestPagingResult.StructureFault)
                return (fault.Status, (uint)fault.Address.Value, linear, fault.Qualification);
            if (paging != GuestPagingResult.Translated)
                throw new InvalidOperationException($"{p.Case.Name}: the guest's own paging gave {paging}");
            gpa = (uint)translated.Value;
        }

        // The access itself is to the translation of its linear address (Table 28-7 bits 7 and 8).
        var status = EptWalker.Translate(Memory, p.Eptp, new GuestPhysicalAddress(gpa), access,
            EptViolationQualification.ForLinearAddress(translationOfLinearAddress: true), out _, out var q);
        return (status, gpa, linear, q);
    }

    public void Dispose() => Memory.Dispose();
}
