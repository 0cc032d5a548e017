using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Runs a generated instruction sequence on the host CPU, the oracle. A stub assembled with Iced
/// saves the host's callee-saved registers, RSP and MXCSR, loads GPRs, RFLAGS, XMM0-15 and MXCSR
/// from a context block, jumps to the sequence; the sequence ends with a jump back into the stub,
/// which stores everything into the context block and returns to managed code.
/// </summary>
internal sealed unsafe class NativeExecutor
{
    // Context block layout (offsets inside the block at TestArena.ContextOffset).
    private const int GprOffset = 0x000;    // 16 x 8 bytes, SDM register-number order
    private const int RflagsOffset = 0x080;
    private const int MxcsrOffset = 0x088;
    private const int HostRspOffset = 0x090;
    private const int HostMxcsrOffset = 0x098;
    private const int TempOffset = 0x0A0;
    private const int XmmOffset = 0x0B0;    // 16 x 16 bytes
    private const int FxOffset = 0x200;     // the case's x87/MMX state, FXSAVE64 image (16-byte aligned)
    private const int HostFxOffset = 0x400; // the host's x87 state while the case runs

    private static readonly AssemblerRegister64[] Gprs =
        [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
    private static readonly AssemblerRegisterXMM[] Xmms =
        [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];

    private readonly TestArena _arena;
    private readonly delegate* unmanaged<void> _entry;

    /// <summary>Address the sequence's terminating jump must target.</summary>
    public ulong ExitAddress { get; }

    public NativeExecutor(TestArena arena)
    {
        _arena = arena;
        ulong stub = arena.Base + TestArena.StubOffset;
        ulong ctx = arena.Base + TestArena.ContextOffset;
        ulong code = arena.Base + TestArena.CodeOffset;

        var a = new Assembler(64);

        // Entry: SysV x86-64 ABI, callee-saved RBX, RBP, R12-R15, RSP and the MXCSR control bits.
        a.push(rbx); a.push(rbp); a.push(r12); a.push(r13); a.push(r14); a.push(r15);
        a.mov(rax, ctx);
        a.mov(__qword_ptr[rax + HostRspOffset], rsp);
        a.stmxcsr(__dword_ptr[rax + HostMxcsrOffset]);
        a.fxsave64(__[rax + HostFxOffset]);
        a.fxrstor64(__[rax + FxOffset]);
        for (int i = 0; i < 16; i++)
            a.movdqu(Xmms[i], __xmmword_ptr[rax + XmmOffset + 16 * i]);
        a.ldmxcsr(__dword_ptr[rax + MxcsrOffset]);
        a.push(__qword_ptr[rax + RflagsOffset]);
        a.popfq();
        for (int i = 1; i < 16; i++)
        {
            if (i != 4)
                a.mov(Gprs[i], __qword_ptr[rax + GprOffset + 8 * i]);
        }
        a.mov(rsp, __qword_ptr[rax + GprOffset + 8 * 4]);
        a.mov(rax, __qword_ptr[rax + GprOffset]);
        a.jmp(code);

        var entryWriter = new ByteWriter();
        a.Assemble(entryWriter, stub);
        ulong exitAddress = (stub + (ulong)entryWriter.Bytes.Count + 15) & ~15UL;

        // Exit: nothing before PUSHFQ may change a flag; the context block sits below 2 GiB, so its
        // absolute address fits a disp32 and RAX can be freed without a base register.
        var e = new Assembler(64);
        e.mov(__qword_ptr[ctx + TempOffset], rax);
        e.mov(rax, ctx);
        e.mov(__qword_ptr[rax + GprOffset + 8 * 4], rsp);
        e.mov(rsp, __qword_ptr[rax + HostRspOffset]);
        e.pushfq();
        e.pop(__qword_ptr[rax + RflagsOffset]);
        for (int i = 1; i < 16; i++)
        {
            if (i != 4)
                e.mov(__qword_ptr[rax + GprOffset + 8 * i], Gprs[i]);
        }
        e.mov(rcx, __qword_ptr[rax + TempOffset]);
        e.mov(__qword_ptr[rax + GprOffset], rcx);
        for (int i = 0; i < 16; i++)
            e.movdqu(__xmmword_ptr[rax + XmmOffset + 16 * i], Xmms[i]);
        e.stmxcsr(__dword_ptr[rax + MxcsrOffset]);
        e.fxsave64(__[rax + FxOffset]);
        e.fxrstor64(__[rax + HostFxOffset]);
        e.ldmxcsr(__dword_ptr[rax + HostMxcsrOffset]);
        e.cld();
        e.pop(r15); e.pop(r14); e.pop(r13); e.pop(r12); e.pop(rbp); e.pop(rbx);
        e.ret();
        var exitWriter = new ByteWriter();
        e.Assemble(exitWriter, exitAddress);

        var stubBytes = arena.Span(TestArena.StubOffset, 0x800);
        stubBytes.Fill(0xCC);
        entryWriter.Bytes.ToArray().CopyTo(stubBytes);
        exitWriter.Bytes.ToArray().CopyTo(stubBytes[(int)(exitAddress - stub)..]);
        ExitAddress = exitAddress;
        _entry = (delegate* unmanaged<void>)stub;
    }

    /// <summary>Writes <paramref name="sequence"/> (position-dependent code assembled for the arena's code
    /// address, without terminator) followed by a JMP to the stub's exit, loads <paramref name="state"/>,
    /// runs it on the host CPU and reads the resulting state back into <paramref name="state"/>.</summary>
    public void Run(ReadOnlySpan<byte> sequence, CpuSnapshot state)
    {
        if (sequence.Length + 5 > TestArena.CodeCapacity)
            throw new ArgumentException("sequence too long", nameof(sequence));
        ulong code = _arena.Base + TestArena.CodeOffset;
        var codeSpan = _arena.Span(TestArena.CodeOffset, TestArena.CodeCapacity);
        sequence.CopyTo(codeSpan);
        ulong jmpAt = code + (ulong)sequence.Length;
        codeSpan[sequence.Length] = 0xE9; // JMP rel32
        long rel = (long)ExitAddress - (long)(jmpAt + 5);
        MemoryMarshal.Write(codeSpan[(sequence.Length + 1)..], (int)rel);

        byte* ctx = _arena.Pointer(TestArena.ContextOffset);
        for (int i = 0; i < 16; i++)
            ((ulong*)(ctx + GprOffset))[i] = state.Gpr[i];
        *(ulong*)(ctx + RflagsOffset) = state.Rflags;
        *(uint*)(ctx + MxcsrOffset) = state.Mxcsr;
        for (int i = 0; i < 16; i++)
            ((UInt128*)(ctx + XmmOffset))[i] = state.Xmm[i];
        var fx = new Span<byte>(ctx + FxOffset, 512);
        state.Fx.CopyTo(fx);
        BitConverter.TryWriteBytes(fx[24..], state.Mxcsr);
        BitConverter.TryWriteBytes(fx[28..], 0xFFFF);
        state.Scratch.CopyTo(_arena.Span(TestArena.ScratchOffset, TestArena.ScratchSize));
        state.Stack.CopyTo(_arena.Span(TestArena.StackOffset, TestArena.StackSize));

        _entry();

        for (int i = 0; i < 16; i++)
            state.Gpr[i] = ((ulong*)(ctx + GprOffset))[i];
        state.Rflags = *(ulong*)(ctx + RflagsOffset);
        state.Mxcsr = *(uint*)(ctx + MxcsrOffset);
        for (int i = 0; i < 16; i++)
            state.Xmm[i] = ((UInt128*)(ctx + XmmOffset))[i];
        state.Rip = jmpAt;
        new ReadOnlySpan<byte>(ctx + FxOffset, 512).CopyTo(state.Fx);
        _arena.Span(TestArena.ScratchOffset, TestArena.ScratchSize).CopyTo(state.Scratch);
        _arena.Span(TestArena.StackOffset, TestArena.StackSize).CopyTo(state.Stack);
    }
}

/// <summary>An Iced <see cref="CodeWriter"/> that collects bytes.</summary>
internal sealed class ByteWriter : CodeWriter
{
    public List<byte> Bytes { get; } = new(256);

    public override void WriteByte(byte value) => Bytes.Add(value);
}
