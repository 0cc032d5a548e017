using VmmKit.Ept;
using VmmKit.Vmx.Tests.Bochs;

namespace VmmKit.Vmx.Tests;

/// <summary>
/// EPT differential: the harness guest makes one access (load, store or instruction fetch) under EPT tables crafted
/// for each case, Bochs reports the exit (or the HLT that follows a translated access) and the path's entries
/// afterwards; <see cref="EptWalker"/> walking the same table bytes must give the same outcome (translated, EPT
/// violation with the same exit qualification and guest-physical address, or EPT misconfiguration) and the same
/// accessed/dirty flags (SDM Vol. 3C §29.3.2, §29.3.3, §29.3.5, Table 28-7).
/// </summary>
public class BochsEptWalkerTests
{
    private const ulong R = 1, W = 2, X = 4, Rwx = 7;
    private const ulong PermissionBits = 7;
    private const ulong MemoryTypeBits = 7UL << 3;
    private const ulong LargePage = 1UL << 7;
    private const ulong Accessed = 1UL << 8;
    private const ulong Dirty = 1UL << 9;
    private const int BatchSize = 20;

    /// <summary>
    /// Cases where Bochs 2.7 departs from the SDM (the walker follows the SDM), or where the SDM leaves a bit to the
    /// implementation and the two choose differently. Each gives the SDM section that decides
    /// and exactly what Bochs reports instead (the test fails if Bochs reports anything else, agreement included).
    /// </summary>
    private static readonly Dictionary<string, (string Sdm, string Bochs)> BochsGaps = new()
    {
        // Bochs masks bit 12 out of a large page's address (as it does for the PAT bit of ordinary paging) and so
        // translates; the SDM reserves bits 20:12 of an EPT PDE mapping a 2 MiB page and bits 29:12 of an EPT PDPTE
        // mapping a 1 GiB page (Vol. 3C §29.3.2, Tables 29-3 and 29-5), and a set reserved bit is an EPT
        // misconfiguration (§29.3.3.1). Bits 13 and above are checked by Bochs and agree.
        ["PDE leaf address bit 12, Read"] = ("SDM Vol. 3C §29.3.2 Table 29-5, §29.3.3.1", "translated"),
        ["PDPTE leaf address bit 12, Read"] = ("SDM Vol. 3C §29.3.2 Table 29-3, §29.3.3.1", "translated"),

        // With EPT A/D enabled, a guest paging-structure access is treated as a write (§29.3.3.2); the SDM says such
        // an access that causes an EPT violation sets both bit 0 and bit 1 of the qualification (Table 28-7, note 1 of
        // bit 0). Bochs turns the access into a plain write and reports bit 1 only. Outcome, GPA, rights and bits 7-8
        // agree; only bit 0 differs.
        ["paged, page directory R, A/D on, Read"] =
            ("SDM Vol. 3C §28.2.1 Table 28-7 note 1, §29.3.3.2", "violation at 0x40205000 0x8a [W allowed Read paging-structure]"),
        ["paged, page directory X, A/D on, Read"] =
            ("SDM Vol. 3C §28.2.1 Table 28-7 note 1, §29.3.3.2", "violation at 0x40205000 0xa2 [W allowed Execute paging-structure]"),
        ["paged, page directory not present, A/D on, Read"] =
            ("SDM Vol. 3C §28.2.1 Table 28-7 note 1, §29.3.3.2", "violation at 0x40205000 0x82 [W allowed None paging-structure]"),
        ["paged, page directory PDE R, A/D on, Read"] =
            ("SDM Vol. 3C §28.2.1 Table 28-7 note 1, §29.3.3.2", "violation at 0x40205000 0x8a [W allowed Read paging-structure]"),

        // The processor's updates of accessed and dirty flags in guest paging structures are data writes with regard
        // to EPT violations (§29.3.3.2); Bochs writes the guest's accessed flag into an EPT read-only page directory
        // without an EPT check and translates.
        ["paged, page directory R, guest PDE A clear, A/D off, Read"] = ("SDM Vol. 3C §29.3.3.2", "translated"),

        // A read-modify-write that causes an EPT violation sets bit 1; whether it also sets bit 0 is
        // implementation-specific (SDM Vol. 3C §28.2.1, text after Table 28-7). The walker sets both (the access was a
        // read and a write); Bochs sets bit 1 only. Both are allowed.
        ["4K leaf R, ReadModifyWrite"] = ("SDM Vol. 3C §28.2.1 (read-modify-write: bit 0 implementation-specific)",
            "violation at 0x40205010 0x18a [W allowed Read linear]"),
        ["4K leaf RX, ReadModifyWrite"] = ("SDM Vol. 3C §28.2.1 (read-modify-write: bit 0 implementation-specific)",
            "violation at 0x40205010 0x1aa [W allowed Read, Execute linear]"),
        ["4K leaf X, ReadModifyWrite"] = ("SDM Vol. 3C §28.2.1 (read-modify-write: bit 0 implementation-specific)",
            "violation at 0x40205010 0x1a2 [W allowed Execute linear]"),
    };

    [Theory]
    [InlineData(BochsHarness.Haswell)]
    [InlineData(BochsHarness.Skylake)]
    public void Every_crafted_ept_gives_the_same_outcome_from_EptWalker_and_Bochs(string cpuModel)
    {
        var caps = BochsHarness.CapabilitiesOf(cpuModel);
        var cases = Cases().ToList();
        Assert.True(cases.Count >= 162, $"only {cases.Count} cases");
        var disagreements = new List<string>();
        var gapsSeen = new HashSet<string>();
        var outcomes = new Dictionary<EptTranslationStatus, int>();
        foreach (var chunk in cases.Chunk(BatchSize))
        {
            using var batch = new EptDifferentialBatch(chunk);
            var harnessCases = batch.Cases.Select(p => new HarnessCase(p.Case.Name, GuestVmcs(caps, p), p.Slots)).ToList();
            var image = VmxHarnessImage.Build(harnessCases, batch.Memory);
            var log = HarnessLog.Parse(BochsMachine.Run(image, cpuModel));
            Assert.Empty(log.Problems);
            for (int i = 0; i < batch.Cases.Count; i++)
            {
                var p = batch.Cases[i];
                var replay = batch.Replay(p);
                outcomes[replay.Status] = outcomes.GetValueOrDefault(replay.Status) + 1;
                string? difference = Compare(batch, p, replay, log.Verdict(i), log.GuestRipAtExit.GetValueOrDefault(i), log.Watched.GetValueOrDefault(i));
                if (BochsGaps.TryGetValue(p.Case.Name, out var gap))
                {
                    if (difference == null || !difference.EndsWith("; Bochs " + gap.Bochs, StringComparison.Ordinal))
                        disagreements.Add($"{p.Case.Name}: documented Bochs gap ({gap.Sdm}) expected Bochs {gap.Bochs}; got {difference ?? "agreement"}");
                    gapsSeen.Add(p.Case.Name);
                }
                else if (difference != null)
                {
                    disagreements.Add($"{p.Case.Name}: {difference}");
                }
            }
        }
        Assert.True(disagreements.Count == 0, string.Join("\n", disagreements));
        Assert.Equal(BochsGaps.Keys.Order(), gapsSeen.Order());
        // Not vacuous: each outcome is exercised many times.
        Assert.All(Enum.GetValues<EptTranslationStatus>(), s => Assert.True(outcomes.GetValueOrDefault(s) >= 20, $"{s}: {outcomes.GetValueOrDefault(s)}"));
    }

    private static Vmcs GuestVmcs(VmxCapabilities caps, EptDifferentialBatch.Prepared p)
    {
        var vmcs = new Vmcs();
        VmcsBuilder.SetPvh32Guest(vmcs, caps, p.Eptp, p.Rip, BochsHarness.GuestExits);
        VmcsBuilder.SetHostState(vmcs, VmxHarnessImage.HostState);
        vmcs.Write(VmcsField.ExceptionBitmap, BochsHarness.GuestExceptions);
        if (p.Case.Paged)
        {
            vmcs.Write(VmcsField.GuestCr0, vmcs.Read(VmcsField.GuestCr0) | EptDifferentialBatch.PagedCr0);
            vmcs.Write(VmcsField.GuestCr4, vmcs.Read(VmcsField.GuestCr4) | EptDifferentialBatch.PagedCr4);
            vmcs.Write(VmcsField.GuestCr3, p.Cr3);
        }
        return vmcs;
    }

    private static string? Compare(EptDifferentialBatch batch, EptDifferentialBatch.Prepared p,
        (EptTranslationStatus Status, uint Gpa, uint Gla, EptViolationQualification Qualification) replay, VmExit bochs, ulong bochsRip, Dictionary<uint, ulong>? watched)
    {
        var (status, gpa, gla, q) = replay;
        string ours = status switch
        {
            EptTranslationStatus.Success => "translated",
            EptTranslationStatus.Violation => $"violation at 0x{gpa:x} {q}",
            _ => $"misconfiguration at 0x{gpa:x}",
        };
        string theirs = bochs.Outcome != VmExitOutcome.VmExit ? bochs.ToString()! : bochs.Reason switch
        {
            VmxExitReason.Hlt => "translated",
            VmxExitReason.EptViolation => $"violation at 0x{bochs.GuestPhysicalAddress:x} {bochs.EptViolation}",
            VmxExitReason.EptMisconfiguration => $"misconfiguration at 0x{bochs.GuestPhysicalAddress:x}",
            _ => $"exit {bochs.Reason} qualification 0x{bochs.Qualification:x} at rip 0x{bochsRip:x}",
        };
        bool same = status switch
        {
            EptTranslationStatus.Success => bochs.Reason == VmxExitReason.Hlt
                && bochsRip == (p.Case.Access == EptProbe.Fetch ? p.Target : p.Rip + (uint)SnippetHltOffset(p.Case.Access)),
            EptTranslationStatus.Violation => bochs.Reason == VmxExitReason.EptViolation && bochs.GuestPhysicalAddress == gpa
                && bochs.GuestLinearAddress == gla && (bochs.Qualification & 0x11FF) == (q.Value & 0x11FF),
            _ => bochs.Reason == VmxExitReason.EptMisconfiguration && bochs.GuestPhysicalAddress == gpa,
        };
        if (bochs.Outcome != VmExitOutcome.VmExit)
            same = false;
        if (!same)
            return $"EptWalker {ours}; Bochs {theirs}";
        foreach (uint slot in p.Slots)
        {
            ulong expected = batch.Read(slot);
            if (watched == null || !watched.TryGetValue(slot, out ulong actual))
                return $"Bochs logged no entry at 0x{slot:x}";
            if (actual != expected)
                return $"{ours}, but the entry at 0x{slot:x} is 0x{actual:x} in Bochs, 0x{expected:x} after EptWalker";
        }
        return null;
    }

    private static int SnippetHltOffset(EptProbe access) => 5 + EptDifferentialBatch.SnippetAccessLength(access);

    private static EptDifferentialCase C(string name, EptProbe access, int leaf, Func<EptPath, EptPath> craft, bool ad = false, bool atEnd = false,
        bool paged = false, uint guestPde = 0xE7) =>
        new(name, access, leaf, craft, ad, atEnd, paged, guestPde);

    private static string Rights(ulong r) => r == 0 ? "none" : $"{((r & R) != 0 ? "R" : "")}{((r & W) != 0 ? "W" : "")}{((r & X) != 0 ? "X" : "")}";

    private static readonly string[] LevelNames = ["", "PTE", "PDE", "PDPTE", "PML4E"];

    private static IEnumerable<EptDifferentialCase> Cases()
    {
        var probes = new[] { EptProbe.Read, EptProbe.Write, EptProbe.Fetch };

        // Rights of a 4 KiB leaf against each access (§29.3.3.2): every present combination, execute-only included.
        foreach (ulong rights in new ulong[] { R, R | W, R | X, Rwx, X })
            foreach (var probe in probes)
                yield return C($"4K leaf {Rights(rights)}, {probe}", probe, 1, p => p.Edit(1, rights, PermissionBits));

        // A read-modify-write needs read and write rights (a read-only grant stays read-only to an ADD to memory).
        foreach (ulong rights in new ulong[] { R, R | W, R | X, X })
            yield return C($"4K leaf {Rights(rights)}, ReadModifyWrite", EptProbe.ReadModifyWrite, 1, p => p.Edit(1, rights, PermissionBits));
        yield return C("A/D on, PTE, ReadModifyWrite", EptProbe.ReadModifyWrite, 1, p => p, ad: true);

        // Rights of each non-leaf level: the qualification reports the AND over the walk (Table 28-7 bits 5:3).
        // PML4E 0 also maps the code, so it keeps X; the PDPTE and PDE are the target's alone.
        foreach (int level in new[] { 4, 3, 2 })
            foreach (ulong rights in level == 4 ? new ulong[] { X, R | X } : new ulong[] { R, R | W, X, R | X })
                foreach (var probe in probes)
                    yield return C($"{LevelNames[level]} {Rights(rights)} over RWX leaf, {probe}", probe, 1, p => p.Edit(level, rights, PermissionBits));

        // Not present at each level (§29.3.3.2); at the PML4E the fetch of the case's own code is the access.
        foreach (int level in new[] { 4, 3, 2, 1 })
            yield return C($"{LevelNames[level]} not present, Read", EptProbe.Read, 1, p => p.Edit(level, 0, PermissionBits));

        // Write-only and write-execute entries are misconfigurations at every level (§29.3.3.1).
        foreach (int level in new[] { 4, 3, 2, 1 })
            foreach (ulong rights in new ulong[] { W, W | X })
                yield return C($"{LevelNames[level]} {Rights(rights)}, Read", EptProbe.Read, 1, p => p.Edit(level, rights, PermissionBits));

        // Memory types 0-7 in 4 KiB, 2 MiB and 1 GiB leaves: 2, 3 and 7 are reserved (§29.3.3.1); ignore-PAT is free.
        foreach (int leaf in new[] { 1, 2, 3 })
            foreach (ulong type in new ulong[] { 0, 1, 2, 3, 4, 5, 6, 7 })
                yield return C($"{LevelNames[leaf]} leaf memory type {type}, Read", EptProbe.Read, leaf, p => p.Edit(leaf, type << 3, MemoryTypeBits));
        foreach (int leaf in new[] { 1, 2, 3 })
            yield return C($"{LevelNames[leaf]} leaf ignore-PAT, Write", EptProbe.Write, leaf, p => p.Edit(leaf, 1UL << 6));

        // Reserved bits of non-leaf entries: 7:3 in the PML4E (bit 7 included), 6:3 in a PDPTE or PDE naming a table.
        foreach (int bit in new[] { 3, 6, 7 })
            yield return C($"PML4E bit {bit}, Read", EptProbe.Read, 1, p => p.Edit(4, 1UL << bit));
        foreach (int level in new[] { 3, 2 })
            foreach (int bit in new[] { 3, 6 })
                yield return C($"{LevelNames[level]} (table) bit {bit}, Read", EptProbe.Read, 1, p => p.Edit(level, 1UL << bit));

        // Bits 51:N are reserved at every level (N = 46 for the walker; Bochs's N is smaller, so bit 51 is reserved for both).
        foreach (int level in new[] { 4, 3, 2, 1 })
            yield return C($"{LevelNames[level]} bit 51, Read", EptProbe.Read, 1, p => p.Edit(level, 1UL << 51));
        // Bits 62:52 are ignored, bit 63 (suppress #VE) matters only with EPT-violation #VE; bit 7 of a PTE is ignored.
        yield return C("PTE bits 52 and 63, Read", EptProbe.Read, 1, p => p.Edit(1, (1UL << 52) | (1UL << 63)));
        yield return C("PTE bit 7, Read", EptProbe.Read, 1, p => p.Edit(1, LargePage));

        // Large pages: rights, address bits below the page size reserved (§29.3.3.1), reserved address bits.
        foreach (int leaf in new[] { 2, 3 })
        {
            foreach (ulong rights in new ulong[] { R, X, Rwx })
                foreach (var probe in probes)
                    yield return C($"{LevelNames[leaf]} leaf {Rights(rights)}, {probe}", probe, leaf, p => p.Edit(leaf, rights, PermissionBits));
            foreach (int bit in leaf == 2 ? new[] { 12, 13, 20 } : new[] { 12, 21, 29 })
                yield return C($"{LevelNames[leaf]} leaf address bit {bit}, Read", EptProbe.Read, leaf, p => p.Edit(leaf, 1UL << bit));
            yield return C($"{LevelNames[leaf]} leaf not present, Read", EptProbe.Read, leaf, p => p.Edit(leaf, 0, PermissionBits));
            yield return C($"{LevelNames[leaf]} leaf W, Read", EptProbe.Read, leaf, p => p.Edit(leaf, W, PermissionBits));
        }

        // Accessed and dirty flags (§29.3.5): set on every entry used when the EPTP enables them, dirty on the leaf of
        // a write; none on a violation; none at all when the EPTP does not enable them.
        foreach (int leaf in new[] { 1, 2, 3 })
            foreach (var probe in probes)
                yield return C($"A/D on, {LevelNames[leaf]} leaf, {probe}", probe, leaf, p => p, ad: true);
        yield return C("A/D on, PTE already A and D, Write", EptProbe.Write, 1, p => p.Edit(1, Accessed | Dirty), ad: true);
        yield return C("A/D on, PTE R, Write (violation)", EptProbe.Write, 1, p => p.Edit(1, R, PermissionBits), ad: true);
        yield return C("A/D on, PDE not present, Read", EptProbe.Read, 1, p => p.Edit(2, 0, PermissionBits), ad: true);
        yield return C("A/D on, PTE memory type 2, Read (misconfiguration)", EptProbe.Read, 1, p => p.Edit(1, 2UL << 3, MemoryTypeBits), ad: true);
        yield return C("A/D off, PTE, Write", EptProbe.Write, 1, p => p);

        // A paged guest whose page directory sits behind the path: its walks are data reads (§29.3.3.2), treated as
        // writes when the EPTP enables accessed and dirty flags (then the EPT dirty flag is set, §29.3.5); a violation
        // reports bit 7 set and bit 8 clear (Table 28-7).
        foreach (bool ad in new[] { false, true })
        {
            string mode = ad ? "A/D on" : "A/D off";
            yield return C($"paged, page directory RWX, {mode}, Read", EptProbe.Read, 1, p => p, ad: ad, paged: true);
            yield return C($"paged, page directory R, {mode}, Read", EptProbe.Read, 1, p => p.Edit(1, R, PermissionBits), ad: ad, paged: true);
            yield return C($"paged, page directory X, {mode}, Read", EptProbe.Read, 1, p => p.Edit(1, X, PermissionBits), ad: ad, paged: true);
            yield return C($"paged, page directory not present, {mode}, Read", EptProbe.Read, 1, p => p.Edit(1, 0, PermissionBits), ad: ad, paged: true);
            yield return C($"paged, page directory PDE R, {mode}, Read", EptProbe.Read, 1, p => p.Edit(2, R, PermissionBits), ad: ad, paged: true);
        }

        // The guest's walk sets the accessed flag of its PDE: a data write to the page directory (§29.3.3.2), which an
        // EPT read-only page refuses; the violation is still an access to a paging-structure entry (bit 8 clear).
        yield return C("paged, page directory R, guest PDE A clear, A/D off, Read", EptProbe.Read, 1,
            p => p.Edit(1, R, PermissionBits), paged: true, guestPde: 0x87);
        yield return C("paged, page directory RWX, guest PDE A clear, A/D on, Read", EptProbe.Read, 1, p => p, ad: true, paged: true, guestPde: 0x87);

        // An access at the end of a page whose next page is not mapped: the second half's GPA is reported.
        foreach (int leaf in new[] { 1, 2, 3 })
        {
            yield return C($"{LevelNames[leaf]} leaf end, Read", EptProbe.Read, leaf, p => p, atEnd: true);
            yield return C($"A/D on, {LevelNames[leaf]} leaf end, Read", EptProbe.Read, leaf, p => p, ad: true, atEnd: true);
        }
    }
}
