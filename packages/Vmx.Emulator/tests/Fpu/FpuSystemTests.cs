using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Fpu;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Differential;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Fpu;

/// <summary>
/// x87/MMX/XSAVE behaviour the host cannot show in a user process (faults, CR0 bits, exits, XCR0), checked against
/// the SDM: #NM and #UD per CR0.EM/MP/TS (Vol. 3A §2.5 table 2-2), deferred #MF (Vol. 1 §8.7), unmasked-exception
/// store suppression, the FXSAVE/XSAVE image layouts (Vol. 1 §10.5.1, §13.4), XRSTOR's checks, XGETBV/XSETBV.
/// </summary>
public sealed unsafe class FpuSystemTests
{
    private const ulong Code0 = 0x1000;
    private const ulong Data0 = 0x4000;
    private const ulong Cr0Mp = 1 << 1, Cr0Em = 1 << 2, Cr0Ts = 1 << 3, Cr0Ne = 1 << 5;

    private static FlatTestMachine Machine(int bitness = 64)
    {
        var m = new FlatTestMachine(1 << 20, bitness);
        m.State.Cr4 |= (1UL << 9) | (1UL << 10) | (1UL << 18);
        m.State.Cr0 |= Cr0Ne;
        m.State.Fpu.Reset();
        return m;
    }

    private static FlatRunResult Run(FlatTestMachine m, Action<Assembler> build, int bitness = 64)
    {
        var a = new Assembler(bitness);
        build(a);
        a.hlt();
        var w = new ByteWriter();
        a.Assemble(w, Code0);
        w.Bytes.ToArray().CopyTo(m.Memory[(int)Code0..]);
        m.State.Rip = Code0;
        m.State.R(4) = 0x8000;
        m.State.R(3) = Data0;
        return m.Run(10_000);
    }

    private static ulong Rip(FlatTestMachine m) => m.State.Rip;

    [Fact]
    public void X87_with_TS_or_EM_raises_NM_and_MMX_with_EM_raises_UD()
    {
        using var m = Machine();
        m.State.Cr0 |= Cr0Ts;
        var r = Run(m, a => a.fld1());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.NM), (r.Reason, r.Vector));
        Assert.Equal(Code0, Rip(m));

        m.State.Cr0 = (m.State.Cr0 & ~Cr0Ts) | Cr0Em;
        r = Run(m, a => a.fld1());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.NM), (r.Reason, r.Vector));
        r = Run(m, a => a.paddb(mm0, mm1));
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.UD), (r.Reason, r.Vector));
        r = Run(m, a => a.emms());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.UD), (r.Reason, r.Vector));
    }

    [Fact]
    public void Wait_raises_NM_only_with_MP_and_TS()
    {
        using var m = Machine();
        m.State.Cr0 |= Cr0Ts;
        Assert.Equal(FlatStopReason.Halt, Run(m, a => a.wait()).Reason);
        m.State.Cr0 |= Cr0Mp;
        var r = Run(m, a => a.wait());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.NM), (r.Reason, r.Vector));
    }

    /// <summary>An unmasked zero divide leaves the destination unchanged, sets ZE, ES and B, and is reported as #MF
    /// at the next waiting instruction (not at FNSTSW, a non-waiting one), with FIP at the faulting FDIV.</summary>
    [Fact]
    public void Unmasked_exception_is_deferred_to_the_next_waiting_instruction()
    {
        using var m = Machine();
        BitConverter.TryWriteBytes(m.Memory[(int)Data0..], (ushort)0x037B); // ZM = 0
        var r = Run(m, a =>
        {
            a.fldcw(__word_ptr[rbx]);
            a.fld1();
            a.fldz();
            a.fdivp(st1, st0);   // 0 / 1? no: ST(1) = ST(1) / ST(0) = 1 / 0 -> #Z
            a.fnstsw(ax);
            a.fadd(st0, st0);
        });
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.MF), (r.Reason, r.Vector));
        ushort fsw = m.State.Fpu.Fsw;
        Assert.Equal(fsw, (ushort)m.State.R(0));
        Assert.Equal(0x8084, fsw & 0x80FF);               // B, ES, ZE
        Assert.Equal(6, (fsw >> 11) & 7);                   // the pop did not happen
        Assert.Equal(0x3FFF, m.State.Fpu.Exponent((fsw >> 11 & 7) + 1 & 7)); // ST(1) still 1.0
        var fadd = Rip(m);
        Assert.Equal(0xD8, m.Memory[(int)fadd]);

        // With CR0.NE = 0 the error goes to FERR#; the processor continues as with IGNNE# asserted.
        m.State.Cr0 &= ~Cr0Ne;
        Assert.Equal(FlatStopReason.Halt, m.Run(10).Reason);
    }

    [Fact]
    public void Store_with_unmasked_invalid_operation_leaves_memory_unchanged()
    {
        using var m = Machine();
        BitConverter.TryWriteBytes(m.Memory[(int)Data0..], (ushort)0x037E); // IM = 0
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 8)..], 0x55AA55AAu);
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 16)..], 0x7FC00000u);      // a quiet NaN
        var r = Run(m, a =>
        {
            a.fldz();
            a.fldz();
            a.fldcw(__word_ptr[rbx]);
            a.fdiv(st0, st1);                                // 0/0: invalid, unmasked -> ST(0) unchanged
            a.fnclex();
            a.fld(__dword_ptr[rbx + 16]);                    // a NaN
            a.fistp(__dword_ptr[rbx + 8]);                   // invalid -> no store, no pop
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0x55AA55AAu, BitConverter.ToUInt32(m.Memory[((int)Data0 + 8)..]));
        Assert.Equal(1, m.State.Fpu.Fsw & 1);
    }

    [Fact]
    public void Fxsave64_image_matches_the_sdm_layout()
    {
        using var m = Machine();
        m.State.Mxcsr = 0x1F80;
        m.State.XmmLow(9) = 0x1122334455667788;
        var r = Run(m, a =>
        {
            a.fld1();
            a.fxsave64(__[rbx]);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        var img = m.Memory.Slice((int)Data0, 512);
        Assert.Equal(0x037F, BitConverter.ToUInt16(img));
        Assert.Equal(0x3800, BitConverter.ToUInt16(img[2..]));          // TOP = 7
        Assert.Equal(0x80, img[4]);                                      // R7 valid
        Assert.Equal(0x1E8, BitConverter.ToUInt16(img[6..]));           // FOP of D9 E8
        Assert.Equal(Code0, BitConverter.ToUInt64(img[8..]));           // FIP (64-bit)
        Assert.Equal(0x1F80u, BitConverter.ToUInt32(img[24..]));
        Assert.Equal(0xFFFFu, BitConverter.ToUInt32(img[28..]));         // MXCSR_MASK
        Assert.Equal(0x8000000000000000UL, BitConverter.ToUInt64(img[32..]));
        Assert.Equal(0x3FFF, BitConverter.ToUInt16(img[40..]));
        Assert.Equal(0x1122334455667788UL, BitConverter.ToUInt64(img[(160 + 16 * 9)..]));

        r = Run(m, a => a.fxsave(__[rbx + 8]));
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
    }

    [Fact]
    public void Fxrstor_rejects_reserved_mxcsr_bits()
    {
        using var m = Machine();
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 24)..], 0x10000u);
        var r = Run(m, a => a.fxrstor64(__[rbx]));
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
    }

    [Fact]
    public void Xsave_writes_xstate_bv_and_xrstor_initializes_absent_components()
    {
        using var m = Machine();
        m.Memory.Slice((int)Data0, 1024).Fill(0xEE);
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 512)..], 0UL);
        m.Memory.Slice((int)Data0 + 520, 56).Clear();
        m.State.XmmLow(2) = 7;
        Assert.True(ExtendedControlRegisters.TrySet(ref m.State, 0, 3));          // XCR0 = x87 | SSE (reset value is 1)
        var r = Run(m, a =>
        {
            a.fld1();
            a.mov(eax, 3);
            a.xor(edx, edx);
            a.xsave64(__[rbx]);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(3UL, BitConverter.ToUInt64(m.Memory[((int)Data0 + 512)..]));       // XSTATE_BV = XINUSE & RFBM
        Assert.Equal(0xEE, m.Memory[(int)Data0 + 464]);                                 // bytes 464-511 untouched
        Assert.Equal(7UL, BitConverter.ToUInt64(m.Memory[((int)Data0 + 160 + 32)..]));

        // XSTATE_BV = 1 (x87 only): XRSTOR with RFBM = 3 loads x87 and initializes SSE (XMM = 0), MXCSR from memory.
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 512)..], 1UL);
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 24)..], 0x1F00u);
        m.State.Fpu.Initialize();
        r = Run(m, a =>
        {
            a.mov(eax, 3);
            a.xor(edx, edx);
            a.xrstor64(__[rbx]);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0UL, m.State.XmmLow(2));
        Assert.Equal(0x1F00u, m.State.Mxcsr);
        Assert.Equal(0x80, m.State.Fpu.Ftw);

        // XCOMP_BV != 0 (compacted form, no XSAVEC) and XSTATE_BV bits outside XCR0 raise #GP(0); so does misalignment.
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 520)..], 1UL << 63);
        r = Run(m, a => { a.mov(eax, 3); a.xor(edx, edx); a.xrstor64(__[rbx]); });
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 520)..], 0UL);
        BitConverter.TryWriteBytes(m.Memory[((int)Data0 + 512)..], 4UL);
        r = Run(m, a => { a.mov(eax, 3); a.xor(edx, edx); a.xrstor64(__[rbx]); });
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
        r = Run(m, a => { a.mov(eax, 3); a.xor(edx, edx); a.xsave64(__[rbx + 16]); });
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
    }

    [Fact]
    public void Xgetbv_and_xsetbv_follow_the_sdm()
    {
        using var m = Machine();
        var r = Run(m, a => { a.xor(ecx, ecx); a.xgetbv(); });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal((1UL, 0UL), (m.State.R(0), m.State.R(2)));
        r = Run(m, a => { a.mov(ecx, 2); a.xgetbv(); });
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));

        // XSETBV: the unconditional VM exit (reason 55) at CPL 0; #GP(0) at CPL 3 first; #UD without CR4.OSXSAVE.
        r = Run(m, a => { a.xor(ecx, ecx); a.mov(eax, 3); a.xor(edx, edx); a.xsetbv(); });
        Assert.Equal((FlatStopReason.Exit, 55u), (r.Reason, r.ExitReason));
        m.State.Ss.AccessRights |= 3 << 5;
        r = Run(m, a => a.xsetbv());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.GP), (r.Reason, r.Vector));
        m.State.Ss.AccessRights &= ~(3u << 5);
        m.State.Cr4 &= ~(1UL << 18);
        r = Run(m, a => a.xgetbv());
        Assert.Equal((FlatStopReason.Exception, ExceptionVector.UD), (r.Reason, r.Vector));

        // What the hypervisor applies after the exit.
        Assert.True(ExtendedControlRegisters.TrySet(ref m.State, 0, 3));
        Assert.Equal(3UL, m.State.Fpu.Xcr0);
        Assert.False(ExtendedControlRegisters.TrySet(ref m.State, 0, 2));   // x87 bit must be set
        Assert.False(ExtendedControlRegisters.TrySet(ref m.State, 0, 7));   // AVX not supported
        Assert.False(ExtendedControlRegisters.TrySet(ref m.State, 1, 3));   // only XCR0 exists
    }

    [Fact]
    public void Fnstenv_in_real_mode_uses_the_16_bit_real_layout()
    {
        using var m = Machine(16);
        m.State.Cr0 &= ~1UL;
        m.State.Cs.Selector = 0;                                                     // real mode: CS base = selector * 16 = 0
        var r = Run(m, a =>
        {
            a.fld1();
            a.fnstenv(__[bx]);
        }, 16);
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        var env = m.Memory.Slice((int)Data0, 14);
        Assert.Equal(0x037F | 0x3F, BitConverter.ToUInt16(env));
        Assert.Equal(0x3800, BitConverter.ToUInt16(env[2..]));
        Assert.Equal(0x3FFF, BitConverter.ToUInt16(env[4..]));               // R7 valid (00), others empty
        Assert.Equal((ushort)Code0, BitConverter.ToUInt16(env[6..]));       // FIP[15:0] (CS base 0)
        Assert.Equal(0x1E8, BitConverter.ToUInt16(env[8..]) & 0x7FF);        // FOP
        Assert.Equal(0x037F | 0x3F, m.State.Fpu.Fcw);                        // FNSTENV masks all exceptions
    }
}

/// <summary>The CPUID bits the lead's policy reports come from <see cref="ImplementedFeatures"/>; they must name what runs.</summary>
public sealed unsafe class FpuFeatureBitsTests
{
    [Fact]
    public void Reported_features_are_registered_instructions()
    {
        // On an x86-64 host every bit is implemented; each sample instruction must not raise #UD.
        Assert.Equal(0x0780_0001u, ImplementedFeatures.Leaf1Edx & 0x0780_0001u);
        Assert.Equal(0x04D8_0201u, ImplementedFeatures.Leaf1Ecx); // bits 0 9 19 20 22 23 26
        (Iced.Intel.Code Code, uint Bit)[] samples =
        [
            (Iced.Intel.Code.Fld1, 0), (Iced.Intel.Code.Haddps_xmm_xmmm128, 0), (Iced.Intel.Code.Pshufb_xmm_xmmm128, 9),
            (Iced.Intel.Code.Roundsd_xmm_xmmm64_imm8, 19), (Iced.Intel.Code.Pcmpistri_xmm_xmmm128_imm8, 20),
            (Iced.Intel.Code.Xsave_mem, 26), (Iced.Intel.Code.VEX_Pdep_r64_r64_rm64, 8), (Iced.Intel.Code.Emms, 23),
        ];
        foreach (var (code, _) in samples)
            Assert.True((nint)HandlerTable.Entries[(int)code].Handler != (nint)HandlerTable.Entries[(int)Iced.Intel.Code.INVALID].Handler, code.ToString());
        Assert.Equal((3u, 576u, 576u, 0u), ImplementedFeatures.Leaf0D(0));
    }
}
