using System.Diagnostics;
using Iced.Intel;
using VmmKit.Vmx;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// "Guests are hostile ... No host exception": seeded, bounded fuzzing of guest code at the system level. Each case
/// builds a 32-bit PVH or long-mode guest (<see cref="VmcsGuest"/>), corrupts its GDT, IDT, TSS and page tables at random,
/// fills the code region with random bytes or random valid instructions biased to system instructions, and plays the
/// hypervisor for a bounded number of exits. The property: every outcome is an exit or a VM-entry failure; no .NET
/// exception leaves <see cref="EmulatedProcessor.Run"/>, and each run ends within its instruction bound.
/// VMMKIT_EMU_FUZZ_SEED=n replays one seed (all its cases) instead of the fixed ones.
/// </summary>
public class HostileCodeFuzzTests(ITestOutputHelper output)
{
    private const int CasesPerSeed = 1500;
    private const int MaxExits = 24;
    private const ulong InstructionsPerRun = 400;
    private const ulong CodeStart = 0x1000;
    private const ulong CodeEnd = 0x4F00;
    private const ulong HandlerStub = 0x4F00;
    private const ulong Scratch = 0x6200;

    public static TheoryData<int> Seeds()
    {
        string? replay = Environment.GetEnvironmentVariable("VMMKIT_EMU_FUZZ_SEED");
        if (!string.IsNullOrEmpty(replay)) return new TheoryData<int>(int.Parse(replay, System.Globalization.CultureInfo.InvariantCulture));
        return new TheoryData<int>(1, 2, 3, 4, 5, 6);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_guest_code_never_throws_out_of_run(int seed)
    {
        var watch = Stopwatch.StartNew();
        var outcomes = new Dictionary<string, int>();
        // The cases run on a worker so that a run that never ends (a host hang is a host failure too) is reported by
        // seed and case instead of hanging the test; a stuck worker is a background thread and dies with the process.
        string current = "";
        long progress = 0;
        Exception? failure = null;
        var worker = new Thread(() =>
        {
            try
            {
                for (int k = 0; k < CasesPerSeed; k++)
                {
                    string outcome = RunCase(seed, k, where => Volatile.Write(ref current, where));
                    outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                    Interlocked.Increment(ref progress);
                }
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        }) { IsBackground = true, Name = $"fuzz seed {seed}" };
        worker.Start();
        long seen = -1;
        var stalled = Stopwatch.StartNew();
        while (!worker.Join(200))
        {
            long now = Interlocked.Read(ref progress);
            if (now != seen) { seen = now; stalled.Restart(); }
            else if (stalled.ElapsedMilliseconds > 10_000)
            {
                Assert.Fail($"did not end within 10 s: {Volatile.Read(ref current)}");
            }
        }
        if (failure != null) throw failure;
        output.WriteLine($"seed {seed}: {CasesPerSeed} cases in {watch.ElapsedMilliseconds} ms; " +
            string.Join(", ", outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}")));
    }

    /// <summary>
    /// Found by seeds 2, 3 and 4: a #PF handler whose first fetch faults again, on an IST stack that resets on every
    /// delivery, delivers #PF forever without retiring an instruction. MaxInstructionsPerRun and the preemption timer
    /// must still end the run.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Endless_exception_deliveries_still_end_the_run(bool preemptionTimer)
    {
        // Not disposed when the run does not end: the stuck worker still uses its memory.
        var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.mov(eax, 0x40);
            a.ltr(ax);
            a.ud2();
        });
        InterruptTests.WriteIdtAndTss(g);
        // #UD and #PF go to 0x200000, past the guest's 2 MiB mapping, on IST1.
        g.Write64(0x7000 + 6 * 16, InterruptTests.Gate64(0x20_0000, 1, 0xE, 0));
        g.Write64(0x7000 + 14 * 16, InterruptTests.Gate64(0x20_0000, 1, 0xE, 0));
        if (preemptionTimer)
        {
            g.SetControl(VmcsField.PinBasedVmExecutionControls, (ulong)PinBasedControls.ActivateVmxPreemptionTimer);
            g.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, 10_000);
        }
        else
        {
            g.Cpu.MaxInstructionsPerRun = 10_000;
        }
        VmExit e = default;
        Exception? thrown = null;
        var worker = new Thread(() =>
        {
            try { e = g.Cpu.Run(g.Vmcs); }
            catch (Exception ex) { thrown = ex; }
        }) { IsBackground = true };
        worker.Start();
        Assert.True(worker.Join(10_000), "Run did not end");
        g.Dispose();
        Assert.Null(thrown);
        Assert.Equal(VmxExitReason.VmxPreemptionTimerExpired, e.Reason);
        Assert.Equal(0x20_0000UL, g.Vmcs.Read(VmcsField.GuestRip));
    }

    /// <summary>Runs case <paramref name="index"/> of <paramref name="seed"/>; returns how it ended (for the summary).</summary>
    internal static string RunCase(int seed, int index, Action<string>? describe = null)
    {
        var r = new Random(seed * 100_003 + index);
        int bitness = r.Next(2) == 0 ? 32 : 64;
        int generator = r.Next(4); // 0 random bytes, 1-2 instructions, 3 instructions with random bytes mixed in
        using var g = new VmcsGuest(bitness);
        byte[] code = Generate(r, bitness, generator);
        string where = $"seed {seed} case {index} ({bitness}-bit, generator {generator}); replay with VMMKIT_EMU_FUZZ_SEED={seed}; code {Convert.ToHexString(code.AsSpan(0, Math.Min(code.Length, 256)))}";
        describe?.Invoke(where);
        Prepare(g, r, bitness, code);
        g.Cpu.MaxInstructionsPerRun = InstructionsPerRun;
        int exits = 0;
        while (true)
        {
            VmExit e;
            var watch = Stopwatch.StartNew();
            try
            {
                e = g.Cpu.Run(g.Vmcs);
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"host exception out of Run at exit {exits}, guest RIP 0x{g.Vmcs.Read(VmcsField.GuestRip):X}: {where}\n{ex}");
            }
            if (watch.ElapsedMilliseconds > 5000)
            {
                throw new Xunit.Sdk.XunitException($"Run took {watch.ElapsedMilliseconds} ms for {InstructionsPerRun} instructions: {where}");
            }
            if (e.Outcome != VmExitOutcome.VmExit || e.IsEntryFailure) return "entry failure";
            if (++exits >= MaxExits) return "exit bound";
            if (!Handle(g, r, e)) return e.Reason.ToString();
        }
    }

    /// <summary>Plays the hypervisor for one exit; false ends the case (triple fault, HLT, timer, EPT violation, ...).</summary>
    private static bool Handle(VmcsGuest g, Random r, VmExit e)
    {
        ref GuestRegisters regs = ref g.Cpu.Registers;
        switch (e.Reason)
        {
            case VmxExitReason.TripleFault:
            case VmxExitReason.Hlt:
            case VmxExitReason.VmxPreemptionTimerExpired:
            case VmxExitReason.EptViolation:
            case VmxExitReason.EptMisconfiguration:
            case VmxExitReason.ExceptionOrNmi:
                return false;
            case VmxExitReason.Rdmsr:
            case VmxExitReason.Wrmsr:
            {
                // Like the reference hypervisor: EFER and PAT travel through the VMCS, other MSRs read 0 and drop writes.
                uint msr = (uint)regs.Rcx;
                VmcsField? field = msr switch { 0xC000_0080 => VmcsField.GuestIa32Efer, 0x277 => VmcsField.GuestIa32Pat, _ => null };
                if (e.Reason == VmxExitReason.Rdmsr)
                {
                    ulong v = field == null ? 0 : g.Vmcs.Read(field.Value);
                    regs.Rax = (uint)v;
                    regs.Rdx = v >> 32;
                }
                else if (field != null)
                {
                    ulong v = ((regs.Rdx & 0xFFFF_FFFF) << 32) | (uint)regs.Rax;
                    if (field == VmcsField.GuestIa32Efer) v = (v & ~0x400UL) | (g.Vmcs.Read(VmcsField.GuestIa32Efer) & 0x400);
                    g.Vmcs.Write(field.Value, v);
                }
                break;
            }
            case VmxExitReason.Cpuid:
                regs.Rax = (uint)r.Next();
                regs.Rbx = regs.Rcx = regs.Rdx = 0;
                break;
            case VmxExitReason.Xsetbv:
                if (!g.Cpu.TrySetExtendedControlRegister((uint)regs.Rcx, ((regs.Rdx & 0xFFFF_FFFF) << 32) | (uint)regs.Rax))
                {
                    // #GP(0) injected on the next entry, RIP left on the XSETBV.
                    g.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, 13u | (3u << 8) | InterruptionInformation.ErrorCodeValidBit | InterruptionInformation.ValidBit);
                    g.Vmcs.Write(VmcsField.VmEntryExceptionErrorCode, 0);
                    return true;
                }
                break;
            default:
                if (e.InstructionLength == 0) return false;
                break;
        }
        g.Advance(e);
        // Now and then the hypervisor injects an external interrupt (entry fails when RFLAGS.IF = 0: also an outcome).
        if (r.Next(16) == 0) g.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, (uint)r.Next(32, 256) | InterruptionInformation.ValidBit);
        return true;
    }

    /// <summary>Writes the code, descriptor tables, a handler stub and random corruption; randomizes the registers.</summary>
    private static void Prepare(VmcsGuest g, Random r, int bitness, byte[] code)
    {
        InterruptTests.WriteIdtAndTss(g);
        g.Write(HandlerStub, [0xF4, 0xEB, 0xFD]); // hlt; jmp hlt
        // IDT gates: to the stub or into the random code (so faults keep running hostile code).
        for (int v = 0; v < 256; v++)
        {
            if (r.Next(3) == 0) continue;
            ulong target = r.Next(2) == 0 ? HandlerStub : CodeStart + (ulong)r.Next((int)(CodeEnd - CodeStart));
            int type = r.Next(4) == 0 ? 0xF : 0xE;
            if (bitness == 64)
            {
                g.Write64(0x7000 + (ulong)v * 16, InterruptTests.Gate64(target, r.Next(4) == 0 ? r.Next(8) : 0, type, r.Next(4) == 0 ? 3 : 0));
                g.Write64(0x7000 + (ulong)v * 16 + 8, 0);
            }
            else
            {
                ulong gate = (target & 0xFFFF) | (0x10UL << 16) | ((ulong)type << 40) | ((ulong)(r.Next(4) == 0 ? 3 : 0) << 45) | (1UL << 47) | ((target >> 16 & 0xFFFF) << 48);
                g.Write64(0x7000 + (ulong)v * 8, gate);
            }
        }
        if (bitness == 32) g.Write(0x6100, BitConverter.GetBytes((ushort)0x7FF));
        g.Write(CodeStart, code);
        // Random corruption of the guest's own tables.
        int corruptions = r.Next(4) == 0 ? 0 : r.Next(1, 12);
        for (int k = 0; k < corruptions; k++)
        {
            ulong value = RandomQword(r);
            switch (r.Next(5))
            {
                case 0: g.Write64(0x5000 + (ulong)r.Next(10) * 8, value); break;                    // GDT
                case 1: g.Write64(0x7000 + (ulong)r.Next(512) * 8, value); break;                   // IDT
                case 2: g.Write64(0x8000 + (ulong)r.Next(13) * 8, value); break;                    // TSS
                case 3: g.Write64(0x10000 + (ulong)r.Next(3) * 0x1000 + (ulong)r.Next(4) * 8, value); break; // page tables
                default: g.Write64(0x6000 + (ulong)r.Next(2) * 0x100, value); break;               // pseudo-descriptors
            }
        }
        ref GuestRegisters regs = ref g.Cpu.Registers;
        regs.Rax = RandomValue(r); regs.Rbx = RandomValue(r); regs.Rcx = RandomValue(r); regs.Rdx = RandomValue(r);
        regs.Rsi = RandomValue(r); regs.Rdi = RandomValue(r); regs.Rbp = RandomValue(r);
        regs.R8 = RandomValue(r); regs.R9 = RandomValue(r); regs.R10 = RandomValue(r); regs.R11 = RandomValue(r);
        if (r.Next(8) == 0) g.Vmcs.Write(VmcsField.GuestRsp, RandomValue(r));
        if (r.Next(4) == 0) g.Vmcs.Write(VmcsField.GuestRflags, 0x2 | (ulong)r.Next() & 0x3F_7FD5 & ~0x2_0000UL);
        g.SetControl(VmcsField.PinBasedVmExecutionControls, (ulong)PinBasedControls.ExternalInterruptExiting);
    }

    private static ulong RandomQword(Random r) => r.Next(3) switch
    {
        0 => (ulong)r.NextInt64() ^ ((ulong)r.Next() << 33),
        1 => (ulong)r.Next(0x100000) & ~0xFFFUL | (ulong)r.Next(0x1000) & 0x8FF, // in-RAM frame with random flags
        _ => 0x00CF_9200_0000_FFFFUL ^ (1UL << r.Next(64)),                       // a descriptor with one bit flipped
    };

    /// <summary>A register value: mostly addresses in guest RAM, sometimes edges or fully random.</summary>
    private static ulong RandomValue(Random r) => r.Next(6) switch
    {
        0 or 1 => (ulong)r.Next(0x100000),
        2 => (ulong)r.Next(0x100),
        3 => (ulong)r.NextInt64() ^ ((ulong)r.Next() << 33),
        4 => r.Next(2) == 0 ? 0x7FFF_FFFF_FFFF_FFF0UL + (ulong)r.Next(0x20) : 0xFFFF_FFFF_FFFF_FFF0UL + (ulong)r.Next(0x10),
        _ => 0xFFFF_8000_0000_0000UL - 8 + (ulong)r.Next(16),
    };

    private static byte[] Generate(Random r, int bitness, int generator)
    {
        var bytes = new List<byte>();
        int size = (int)(CodeEnd - CodeStart);
        if (generator == 0)
        {
            var all = new byte[r.Next(16, 512)];
            r.NextBytes(all);
            return all;
        }
        // A prologue that loads the prepared tables, so faults go through them.
        if (r.Next(4) != 0) Emit(bytes, bitness, a => { a.lgdt(__[0x6000]); a.lidt(__[0x6100]); });
        if (bitness == 64 && r.Next(2) == 0) Emit(bytes, bitness, a => { a.mov(eax, 0x40); a.ltr(ax); });
        int count = r.Next(4, 60);
        for (int k = 0; k < count && bytes.Count < size - 64; k++)
        {
            if (generator == 3 && r.Next(6) == 0)
            {
                var junk = new byte[r.Next(1, 8)];
                r.NextBytes(junk);
                bytes.AddRange(junk);
                continue;
            }
            EmitOne(bytes, r, bitness);
        }
        return bytes.ToArray();
    }

    /// <summary>Assembles <paramref name="code"/> at its address; Iced refusing a form in this mode skips it.</summary>
    private static void Emit(List<byte> bytes, int bitness, Action<Assembler> code)
    {
        var a = new Assembler(bitness);
        try
        {
            code(a);
            var w = new ByteWriter();
            a.Assemble(w, CodeStart + (ulong)bytes.Count);
            bytes.AddRange(w.Bytes);
        }
        catch (InvalidOperationException)
        {
        }
        catch (ArgumentException)
        {
        }
    }

    private static readonly AssemblerRegisterCR[] Crs64 = [cr0, cr2, cr3, cr4, cr8];
    private static readonly AssemblerRegisterCR[] Crs32 = [cr0, cr2, cr3, cr4];
    private static readonly AssemblerRegisterDR[] Drs = [dr0, dr1, dr2, dr3, dr6, dr7];
    private static readonly AssemblerRegisterSegment[] Segs = [ds, es, fs, gs, ss];
    private static readonly ulong[] Msrs =
    [
        0x10, 0x1B, 0x3A, 0x48, 0x49, 0x8B, 0xFE, 0x174, 0x175, 0x176, 0x1D9, 0x200, 0x201, 0x277, 0x2FF, 0x480, 0x6E0,
        0x802, 0x808, 0x830, 0x838, 0xDA0, 0xC000_0080, 0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084,
        0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103, 0x4000_0000, 0x4000_0200,
    ];

    private static void SetA(Assembler a, int bitness, ulong value)
    {
        if (bitness == 64) a.mov(rax, value); else a.mov(eax, (uint)value);
    }

    private static ulong Cr(Random r) => r.Next(8) switch
    {
        0 => 0x8000_0031UL ^ (1UL << r.Next(32)),
        1 => 0x8000_0011UL,
        2 => 0x11UL,
        3 => 0x10000UL | (ulong)r.Next(0x1000),
        4 => (ulong)r.Next(0x100) << 12,
        5 => 0x20UL ^ (1UL << r.Next(32)),
        6 => (ulong)r.Next(16),
        _ => RandomValue(r),
    };

    private static void EmitOne(List<byte> bytes, Random r, int bitness)
    {
        bool x64 = bitness == 64;
        AssemblerRegister32 ra = eax;
        ulong v1 = RandomValue(r), v2 = RandomValue(r);
        switch (r.Next(24))
        {
            case 0: // MOV to CR
            {
                AssemblerRegisterCR cr = x64 ? Crs64[r.Next(Crs64.Length)] : Crs32[r.Next(Crs32.Length)];
                ulong value = Cr(r);
                Emit(bytes, bitness, a => { SetA(a, bitness, value); if (x64) a.mov(cr, rax); else a.mov(cr, eax); });
                break;
            }
            case 1: // MOV from CR / DR
            {
                AssemblerRegisterCR cr = x64 ? Crs64[r.Next(Crs64.Length)] : Crs32[r.Next(Crs32.Length)];
                AssemblerRegisterDR dr = Drs[r.Next(Drs.Length)];
                bool fromDr = r.Next(2) == 0;
                Emit(bytes, bitness, a =>
                {
                    if (x64) { if (fromDr) a.mov(rbx, dr); else a.mov(rbx, cr); }
                    else { if (fromDr) a.mov(ebx, dr); else a.mov(ebx, cr); }
                });
                break;
            }
            case 2: // MOV to DR
            {
                AssemblerRegisterDR dr = Drs[r.Next(Drs.Length)];
                ulong value = r.Next(2) == 0 ? (ulong)r.Next() : RandomValue(r);
                Emit(bytes, bitness, a => { SetA(a, bitness, value); if (x64) a.mov(dr, rax); else a.mov(dr, eax); });
                break;
            }
            case 3: // LGDT / LIDT through a random pseudo-descriptor
            {
                ushort limit = r.Next(3) switch { 0 => (ushort)r.Next(0x10000), 1 => (ushort)r.Next(0x60), _ => (ushort)0xFFF };
                ulong b = r.Next(3) switch { 0 => 0x5000UL, 1 => 0x7000UL, _ => RandomValue(r) };
                bool idt = r.Next(2) == 0;
                Emit(bytes, bitness, a =>
                {
                    a.mov(__word_ptr[Scratch], limit);
                    a.mov(__dword_ptr[Scratch + 2], (uint)b);
                    a.mov(__dword_ptr[Scratch + 6], (uint)(b >> 32));
                    if (idt) a.lidt(__[Scratch]); else a.lgdt(__[Scratch]);
                });
                break;
            }
            case 4: // LLDT / LTR / MOV Sreg / POP Sreg
            {
                ushort sel = r.Next(3) == 0 ? (ushort)r.Next(0x10000) : (ushort)r.Next(0x60);
                int kind = r.Next(4);
                AssemblerRegisterSegment seg = Segs[r.Next(Segs.Length)];
                Emit(bytes, bitness, a =>
                {
                    a.mov(eax, sel);
                    if (kind == 0) a.lldt(ax);
                    else if (kind == 1) a.ltr(ax);
                    else a.mov(seg, ax);
                });
                break;
            }
            case 5: // IRET with a random frame
            {
                ulong[] frame = [RandomValue(r), (ulong)r.Next(0x60), 0x2 | (ulong)r.Next() & 0x24_7FD5, 0, (ulong)r.Next(0x60)];
                frame[0] = r.Next(2) == 0 ? CodeStart + (ulong)r.Next((int)(CodeEnd - CodeStart)) : frame[0];
                frame[3] = r.Next(2) == 0 ? 0x80000 - (ulong)r.Next(0x100) : RandomValue(r);
                int size = r.Next(3);
                Emit(bytes, bitness, a =>
                {
                    for (int k = 4; k >= 0; k--)
                    {
                        if (x64) { a.mov(rax, frame[k]); a.push(rax); } else { a.mov(eax, (uint)frame[k]); a.push(eax); }
                    }
                    if (x64 && size == 0) a.iretq(); else if (size == 1) a.iret(); else a.iretd();
                });
                break;
            }
            case 6: // far JMP / CALL through memory, RETF
            {
                ushort sel = (ushort)(r.Next(3) == 0 ? r.Next(0x10000) : r.Next(0x60));
                ulong target = r.Next(2) == 0 ? CodeStart + (ulong)r.Next((int)(CodeEnd - CodeStart)) : RandomValue(r);
                int kind = r.Next(5);
                Emit(bytes, bitness, a =>
                {
                    a.mov(__dword_ptr[Scratch + 0x100], (uint)target);
                    a.mov(__dword_ptr[Scratch + 0x104], (uint)(target >> 32));
                    a.mov(__word_ptr[Scratch + 0x104 + (kind >= 2 && x64 ? 4UL : 0UL)], sel);
                    if (kind == 4)
                    {
                        a.push((int)sel);
                        a.push((int)(uint)target);
                        if (x64 && r.Next(2) == 0) a.db(0x48, 0xCB); else a.db(0xCB);
                    }
                });
                int form = kind < 4 ? kind : -1;
                if (form >= 0)
                {
                    // FF /5 (JMP m16:xx) or FF /3 (CALL m16:xx), disp32 absolute; REX.W for m16:64 in 64-bit mode.
                    if (form >= 2 && x64) bytes.Add(0x48);
                    bytes.Add(0xFF);
                    if (x64) { bytes.Add((form & 1) == 0 ? (byte)0x2C : (byte)0x1C); bytes.Add(0x25); }
                    else bytes.Add((form & 1) == 0 ? (byte)0x2D : (byte)0x1D);
                    bytes.AddRange(BitConverter.GetBytes((uint)(Scratch + 0x100)));
                }
                break;
            }
            case 7: // INT n, INT3, INT1, INTO
                switch (r.Next(4))
                {
                    case 0: bytes.Add(0xCC); break;
                    case 1: bytes.Add(0xF1); break;
                    case 2: bytes.Add(0xCE); break;
                    default: bytes.Add(0xCD); bytes.Add((byte)r.Next(256)); break;
                }
                break;
            case 8: // SYSCALL, SYSRET, SYSENTER, SYSEXIT
            {
                byte[][] forms = [[0x0F, 0x05], [0x0F, 0x07], [0x48, 0x0F, 0x07], [0x0F, 0x34], [0x0F, 0x35], [0x48, 0x0F, 0x35]];
                byte[] f = forms[r.Next(forms.Length)];
                if (!x64 && f[0] == 0x48) f = f[1..];
                ulong target = r.Next(2) == 0 ? CodeStart + (ulong)r.Next(0x3F00) : v1;
                Emit(bytes, bitness, a => { if (x64) { a.mov(rcx, target); a.mov(rdx, v2); } else { a.mov(ecx, (uint)target); a.mov(edx, (uint)v2); } });
                bytes.AddRange(f);
                break;
            }
            case 9: // WRMSR / RDMSR
            {
                uint msr = r.Next(4) == 0 ? (uint)r.Next() : (uint)Msrs[r.Next(Msrs.Length)];
                bool write = r.Next(2) == 0;
                Emit(bytes, bitness, a =>
                {
                    a.mov(ecx, msr);
                    a.mov(eax, (uint)v1);
                    a.mov(edx, r.Next(2) == 0 ? 0u : (uint)(v2 >> 32));
                    if (write) a.wrmsr(); else a.rdmsr();
                });
                break;
            }
            case 10: // INVLPG, CPUID, XSETBV, XGETBV, RDTSC(P), RDPMC
            {
                int kind = r.Next(7);
                Emit(bytes, bitness, a =>
                {
                    a.mov(eax, (uint)v1);
                    a.mov(ecx, r.Next(2) == 0 ? (uint)r.Next(4) : (uint)v2);
                    a.mov(edx, 0u);
                    switch (kind)
                    {
                        case 0: if (x64) a.invlpg(__[rax]); else a.invlpg(__[eax]); break;
                        case 1: a.cpuid(); break;
                        case 2: a.xsetbv(); break;
                        case 3: a.xgetbv(); break;
                        case 4: a.rdtsc(); break;
                        case 5: a.rdtscp(); break;
                        default: a.rdpmc(); break;
                    }
                });
                break;
            }
            case 11: // HLT (rare: it ends the case)
                if (r.Next(4) == 0) bytes.Add(0xF4);
                break;
            case 12: // PUSHF / POPF with a random value
            {
                uint flags = (uint)r.Next() | (r.Next(2) == 0 ? 0x100u : 0); // TF sometimes
                Emit(bytes, bitness, a =>
                {
                    a.push((int)flags);
                    if (x64) a.popfq(); else a.popfd();
                    if (r.Next(2) == 0) { if (x64) a.pushfq(); else a.pushfd(); }
                });
                break;
            }
            case 13: // string ops with REP and random counts
            {
                ulong count = r.Next(4) switch { 0 => (ulong)r.Next(16), 1 => (ulong)r.Next(0x10000), 2 => v1, _ => 0 };
                int op = r.Next(9);
                bool down = r.Next(4) == 0;
                Emit(bytes, bitness, a =>
                {
                    if (x64) { a.mov(rcx, count); a.mov(rsi, v1); a.mov(rdi, v2); }
                    else { a.mov(ecx, (uint)count); a.mov(esi, (uint)v1); a.mov(edi, (uint)v2); }
                    if (down) a.std(); else a.cld();
                    switch (op)
                    {
                        case 0: a.rep.movsb(); break;
                        case 1: a.rep.movsd(); break;
                        case 2: a.rep.stosb(); break;
                        case 3: if (x64) a.rep.stosq(); else a.rep.stosd(); break;
                        case 4: a.rep.lodsw(); break;
                        case 5: a.repe.cmpsb(); break;
                        case 6: a.repne.scasd(); break;
                        case 7: a.rep.insb(); break;
                        default: a.rep.outsw(); break;
                    }
                });
                break;
            }
            case 14: // the guest writes its own tables
            {
                ulong target = r.Next(4) switch
                {
                    0 => 0x5000UL + (ulong)r.Next(0x60),
                    1 => 0x7000UL + (ulong)r.Next(0x1000),
                    2 => 0x10000UL + (ulong)r.Next(0x3000),
                    _ => 0x8000UL + (ulong)r.Next(0x68),
                };
                ulong value = RandomQword(r);
                Emit(bytes, bitness, a =>
                {
                    if (x64) { a.mov(rax, value); a.mov(__qword_ptr[target], rax); }
                    else { a.mov(eax, (uint)value); a.mov(__dword_ptr[target], eax); a.mov(eax, (uint)(value >> 32)); a.mov(__dword_ptr[target + 4], eax); }
                });
                break;
            }
            case 15: // random bytes
            {
                var junk = new byte[r.Next(1, 6)];
                r.NextBytes(junk);
                bytes.AddRange(junk);
                break;
            }
            case 16: // privileged and descriptor instructions without much setup
            {
                int kind = r.Next(20);
                Emit(bytes, bitness, a =>
                {
                    a.mov(eax, r.Next(3) == 0 ? (uint)r.Next() : (uint)r.Next(0x60));
                    switch (kind)
                    {
                        case 0: a.clts(); break;
                        case 1: a.lmsw(ax); break;
                        case 2: a.smsw(__word_ptr[Scratch]); break;
                        case 3: a.sgdt(__[Scratch]); break;
                        case 4: a.sidt(__[Scratch]); break;
                        case 5: a.str(ax); break;
                        case 6: a.sldt(ax); break;
                        case 7: a.lar(ebx, eax); break;
                        case 8: a.lsl(ebx, eax); break;
                        case 9: a.verr(ax); break;
                        case 10: a.verw(ax); break;
                        case 11: if (x64) a.swapgs(); else a.cli(); break;
                        case 12: a.sti(); break;
                        case 13: a.wbinvd(); break;
                        case 14: a.invd(); break;
                        case 15: a.ud2(); break;
                        case 16: a.vmcall(); break;
                        case 17: a.@in(al, dx); break;
                        case 18: a.@out(dx, al); break;
                        default: a.mwait(); break;
                    }
                });
                break;
            }
            case 17: // set a register
            {
                int which = r.Next(4);
                Emit(bytes, bitness, a =>
                {
                    if (x64) a.mov(which switch { 0 => rax, 1 => rbx, 2 => rcx, _ => rsp }, v1);
                    else a.mov(which switch { 0 => eax, 1 => ebx, 2 => ecx, _ => esp }, (uint)v1);
                });
                break;
            }
            case 18: // near JMP / CALL / RET to somewhere in the code
            {
                int rel = r.Next(-0x200, 0x200);
                byte op = r.Next(3) switch { 0 => (byte)0xE9, 1 => (byte)0xE8, _ => (byte)0xC3 };
                bytes.Add(op);
                if (op != 0xC3) bytes.AddRange(BitConverter.GetBytes(rel));
                break;
            }
            case 19: // memory through random registers, push/pop, enter/leave
            {
                int kind = r.Next(6);
                Emit(bytes, bitness, a =>
                {
                    switch (kind)
                    {
                        case 0: if (x64) a.mov(__qword_ptr[rbx], rax); else a.mov(__dword_ptr[ebx], eax); break;
                        case 1: if (x64) a.add(rax, __qword_ptr[rsi + rdi * 8]); else a.add(eax, __dword_ptr[esi + edi * 8]); break;
                        case 2: if (x64) { a.push(rax); a.pop(rbx); } else { a.push(eax); a.pop(ebx); } break;
                        case 3: a.enter((ushort)r.Next(0x10000), (byte)r.Next(40)); a.leave(); break;
                        case 4: if (x64) a.xchg(__qword_ptr[rsp], rax); else a.pushad(); break;
                        default: if (x64) a.@lock.xadd(__qword_ptr[rdx], rcx); else a.popad(); break;
                    }
                });
                break;
            }
            case 20: // segment-prefixed access after a selector change
            {
                ushort sel = (ushort)r.Next(0x60);
                Emit(bytes, bitness, a =>
                {
                    a.mov(eax, sel);
                    a.mov(fs, ax);
                });
                // mov ebx, fs:[0x100]
                bytes.AddRange(x64 ? [0x64, 0x8B, 0x1C, 0x25, 0x00, 0x01, 0x00, 0x00] : [0x64, 0x8B, 0x1D, 0x00, 0x01, 0x00, 0x00]);
                break;
            }
            case 21: // CR8 / TPR and interrupts
                if (x64)
                {
                    ulong tpr = (ulong)r.Next(32);
                    Emit(bytes, bitness, a => { a.mov(rax, tpr); a.mov(cr8, rax); a.sti(); a.nop(); a.cli(); });
                }
                break;
            case 22: // x87 / SSE state instructions
            {
                int kind = r.Next(5);
                Emit(bytes, bitness, a =>
                {
                    switch (kind)
                    {
                        case 0: a.fxsave(__[0x9000]); break;
                        case 1: a.fxrstor(__[0x9000]); break;
                        case 2: a.fninit(); a.fld1(); a.fdiv(st0, st0); break;
                        case 3: a.xsave(__[0x9000]); break;
                        default: a.movaps(xmm0, __xmmword_ptr[ebx]); break;
                    }
                });
                break;
            }
            default: // plain arithmetic that changes flags and registers
                Emit(bytes, bitness, a => { a.add(ra, (int)v1); a.imul(ebx, eax, (int)v2); a.xor(edx, ebx); a.div(ecx); });
                break;
        }
    }

    private sealed class ByteWriter : CodeWriter
    {
        public readonly List<byte> Bytes = new();

        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}
