using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Handlers;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Translator.HostAsm;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// MOVS and STOS, with or without REP, DF = 0, 32- or 64-bit addresses (SDM Vol. 1 §7.3.9; Vol. 2B MOVS, STOS, REP).
/// </summary>
/// <remarks>
/// The translated form does exactly one call's worth of <see cref="Strings.String"/>: the iterations it may do are
/// limited to min(4096, budget left at the instruction, at least 1) as the interpreter limits them, each one retired.
/// A first pass walks the string in chunks that stay inside one page on both sides and checks the software TLB for
/// every chunk (read tag for the source, write tag for the destination, so a frame holding code is never written
/// here); any miss, or an element crossing a page, leaves before the instruction with nothing changed, and the
/// interpreter runs it (fills the TLB, raises the page fault, invalidates the code). The second pass copies each chunk
/// with the host's own REP MOVS / REP STOS (same element order, so overlapping operands give the guest's result) and
/// writes RCX/RSI/RDI back. The interpreter's two outcomes are reproduced: the count reaches 0 (the instruction
/// completes, its earlier iterations count as retired, the block goes on), or the limit is reached first (the
/// iterations count as retired, RIP stays at the instruction and the block ends, as <see cref="ExecStatus.Restart"/>
/// does). DF = 1 and 16-bit addresses stay interpreted.
/// </remarks>
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Iterations per interpreter call of a REP string instruction (Handlers/Strings.cs).</summary>
    private const int StringChunk = 4096;

    private static bool IsStringMove(Code code) => code is Code.Movsb_m8_m8 or Code.Movsw_m16_m16 or Code.Movsd_m32_m32
        or Code.Movsq_m64_m64 or Code.Stosb_m8_AL or Code.Stosw_m16_AX or Code.Stosd_m32_EAX or Code.Stosq_m64_RAX;

    /// <summary>Whether this MOVS/STOS form is translated.</summary>
    private bool SupportedString(Instr* i)
    {
        if (i->AddrSize < 4 || i->MemSize is not (1 or 2 or 4 or 8)) return false;
        // 64-bit mode, 32-bit addresses, an FS/GS source: the offset could wrap at 4 GiB inside a linear page.
        return !(_bitness == 64 && i->AddrSize == 4 && i->Sub == Strings.Movs && i->MemSeg is 4 or 5);
    }

    /// <summary>MOVS / STOS at instruction <paramref name="j"/> (see the remarks of this file).</summary>
    private void StringMove(Instr* i, int j)
    {
        int size = i->MemSize, a = i->AddrSize;
        bool movs = i->Sub == Strings.Movs;
        bool rep = (i->Flags & (InstrFlags.Rep | InstrFlags.Repne)) != 0;
        Label miss = Miss(j), done = A.CreateLabel(), limited = A.CreateLabel();

        A.test(__dword_ptr[rbx + StateLayout.Rflags], (int)Engine.RflagsBits.DF);
        A.jnz(miss);
        if (rep)
        {
            LoadOffset(R8n, 1, a);
            A.test(r8, r8);
            A.jz(done); // count 0: one retired instruction that changes nothing
            if (_log != 0) LockStepLimit(i, j, miss);
            // R10 = min(4096, max(1, budget left at this instruction)); R15 = budget left at the block's start.
            A.lea(r10, __[r15 - j]);
            A.mov(eax, 1);
            A.cmp(r10, rax);
            A.cmovl(r10, rax);
            A.mov(eax, StringChunk);
            A.cmp(r10, rax);
            A.cmovg(r10, rax);
        }
        else
        {
            A.mov(r8d, 1);
            A.mov(r10d, 1);
        }

        Walk(i, miss, copy: false);
        Walk(i, miss, copy: true);

        if (rep)
        {
            // R8 = count left, R9 = iterations done.
            Label finished = A.CreateLabel();
            A.test(r8, r8);
            A.jz(finished);
            A.jmp(limited);
            A.Label(ref finished);
            // Completed: the iterations before the last count here (the block counts the instruction itself), and the
            // budget left for a loop of this block shrinks with them.
            A.lea(rax, __[r9 - 1]);
            A.sub(r15, rax); // counted in InstructionsRetired at the exit (BlockCompiler.Epilogue)
            A.jmp(done);
            // Limit reached: the j instructions before and the iterations retired, RIP at this instruction, block over
            // (the caller adds the block's count for a whole run, so it is taken off first).
            A.Label(ref limited);
            A.lea(rax, __[r9 + (j - _count)]);
            A.sub(r15, rax); // counted in InstructionsRetired at the exit (BlockCompiler.Epilogue)
            SetRip(i->Ip);
            A.mov(eax, _count);
            A.jmp(_exit);
        }
        A.Label(ref done);
        _hostValid = _hostCfValid = false;
    }

    /// <summary>
    /// Lock-step: the interpreter replaying the block must complete the instruction in one call (so at most the
    /// budget it is sure to have: the covered instructions after this one, less the iterations earlier string
    /// instructions of this run retired), and the store log must hold one entry per element plus one per later
    /// instruction. Otherwise the instruction is left to the interpreter.
    /// </summary>
    private void LockStepLimit(Instr* i, int j, Label miss)
    {
        Instr* first = i - j;
        int covered = j;
        while (covered < _count && Supported(first + covered)) covered++;
        A.mov(rax, r15);
        A.sub(rax, j + _count - covered);
        A.jle(miss);
        A.cmp(r8, rax);
        A.ja(miss);
        A.mov(rax, __qword_ptr[r14]);
        A.add(rax, r8);
        A.cmp(rax, WriteLog.Capacity - (covered - j - 1));
        A.ja(miss);
    }

    /// <summary>
    /// One pass over the string in chunks inside one page on both sides, from R8 = count and R10 = limit. The check pass
    /// (<paramref name="copy"/> false) changes nothing and leaves through <paramref name="miss"/> on a TLB miss or an
    /// element crossing a page; the copy pass (the same chunks, so all hits) copies and writes RCX/RSI/RDI. Both end with
    /// R9 = iterations done, R8 = count left; the check pass restores R8.
    /// </summary>
    private void Walk(Instr* i, Label miss, bool copy)
    {
        int size = i->MemSize, a = i->AddrSize, shift = System.Numerics.BitOperations.Log2((uint)size);
        bool movs = i->Sub == Strings.Movs;
        bool rep = (i->Flags & (InstrFlags.Rep | InstrFlags.Repne)) != 0;
        Label chunk = A.CreateLabel(), end = A.CreateLabel();
        if (!copy)
        {
            // Guest offsets in RSI/RDI (the state is not touched), count kept in R11 for the copy pass.
            if (movs) LoadOffset(Rsi, 6, a);
            LoadOffset(Rdi, 7, a);
            A.mov(r11, r8);
        }
        A.xor(r9d, r9d);
        A.Label(ref chunk);
        A.mov(rcx, r10);
        A.sub(rcx, r9);
        A.cmp(rcx, r8);
        A.cmova(rcx, r8);
        if (!copy)
        {
            if (movs) CheckChunk(Rsi, i->MemSeg, shift, write: false, miss);
            CheckChunk(Rdi, 0, shift, write: true, miss);
            A.test(rcx, rcx);
            A.jz(miss); // an element crosses a page
            A.sub(r8, rcx);
            A.add(r9, rcx);
            A.shl(rcx, (byte)shift);
            if (movs) AddOffset(Rsi, Rcx, a);
            AddOffset(Rdi, Rcx, a);
        }
        else
        {
            if (movs)
            {
                LoadOffset(Rsi, 6, a);
                HostAddress(Rsi, i->MemSeg, shift);
            }
            LoadOffset(Rdi, 7, a);
            HostAddress(Rdi, 0, shift);
            if (_log != 0) LogElements(size);
            A.mov(r11, rcx);
            if (movs)
            {
                switch (size)
                {
                    case 1: A.rep.movsb(); break;
                    case 2: A.rep.movsw(); break;
                    case 4: A.rep.movsd(); break;
                    default: A.rep.movsq(); break;
                }
            }
            else
            {
                A.mov(rax, __qword_ptr[rbx + StateLayout.Gpr(0)]);
                switch (size)
                {
                    case 1: A.rep.stosb(); break;
                    case 2: A.rep.stosw(); break;
                    case 4: A.rep.stosd(); break;
                    default: A.rep.stosq(); break;
                }
            }
            A.sub(r8, r11);
            A.add(r9, r11);
            if (rep) A.mov(__qword_ptr[rbx + StateLayout.Gpr(1)], r8); // 32-bit count: upper half zeroed as SetReg does
            A.shl(r11, (byte)shift);
            if (movs) AddGuestOffset(6, R11n, a);
            AddGuestOffset(7, R11n, a);
        }
        if (rep)
        {
            // A single MOVS/STOS is one element: no loop.
            A.test(r8, r8);
            A.jz(end);
            A.cmp(r9, r10);
            A.jb(chunk);
            A.Label(ref end);
        }
        if (!copy) A.mov(r8, r11);
    }

    private const int R11n = 11;

    /// <summary>Host register <paramref name="r"/> = guest GPR <paramref name="slot"/> at address size <paramref name="a"/>.</summary>
    private void LoadOffset(int r, int slot, int a)
    {
        if (a == 8) A.mov(Q(r), __qword_ptr[rbx + StateLayout.Gpr(slot)]);
        else A.mov(Reg32(r), __dword_ptr[rbx + StateLayout.Gpr(slot)]);
    }

    /// <summary>Offset register <paramref name="r"/> += <paramref name="bytes"/>, wrapped to the address size.</summary>
    private void AddOffset(int r, int bytes, int a)
    {
        A.add(Q(r), Q(bytes));
        if (a == 4) A.mov(Reg32(r), Reg32(r));
    }

    /// <summary>Guest GPR <paramref name="slot"/> += host <paramref name="bytes"/> at address size <paramref name="a"/> (Core.SetReg: a 32-bit write zeroes bits 63:32).</summary>
    private void AddGuestOffset(int slot, int bytes, int a)
    {
        if (a == 8)
        {
            A.add(__qword_ptr[rbx + StateLayout.Gpr(slot)], Q(bytes));
            return;
        }
        A.mov(eax, __dword_ptr[rbx + StateLayout.Gpr(slot)]);
        A.add(eax, Reg32(bytes));
        A.mov(__qword_ptr[rbx + StateLayout.Gpr(slot)], rax);
    }

    /// <summary>RDX = linear address of offset <paramref name="r"/> in segment <paramref name="seg"/> (Core.Linear); clobbers RAX.</summary>
    private void LinearOf(int r, int seg)
    {
        A.mov(rdx, Q(r));
        if (_bitness == 64 && seg is not (4 or 5)) return;
        A.mov(rax, (ulong)_segBase + (ulong)(seg * 8));
        A.mov(rax, __qword_ptr[rax]);
        A.add(rdx, rax);
        if (_bitness != 64) A.mov(edx, edx);
    }

    /// <summary>RCX = min(RCX, elements of 2^<paramref name="shift"/> bytes left in RDX's page); clobbers RAX.</summary>
    private void ClampToPage(int shift)
    {
        A.mov(eax, edx);
        A.and(eax, 0xFFF);
        A.neg(eax);
        A.add(eax, 4096);
        A.shr(eax, (byte)shift);
        A.cmp(rcx, rax);
        A.cmova(rcx, rax);
    }

    /// <summary>Check pass: clamps RCX to the page of offset <paramref name="r"/> and requires a TLB hit for it.</summary>
    private void CheckChunk(int r, int seg, int shift, bool write, Label miss)
    {
        LinearOf(r, seg);
        ClampToPage(shift);
        TlbEntryOf(Rdx);
        A.and(rdx, -4096);
        A.cmp(__qword_ptr[rax + (write ? StateLayout.TlbWriteTag : StateLayout.TlbReadTag)], rdx);
        A.jne(miss);
    }

    /// <summary>Copy pass: clamps RCX as the check pass did and turns offset <paramref name="r"/> into its host address.</summary>
    private void HostAddress(int r, int seg, int shift)
    {
        LinearOf(r, seg);
        ClampToPage(shift);
        TlbEntryOf(Rdx);
        A.mov(Q(r), __qword_ptr[rax + StateLayout.TlbAddend]);
        A.add(Q(r), rdx);
    }

    /// <summary>RAX = the software-TLB entry of linear address <paramref name="r"/> (as Probe indexes it).</summary>
    private void TlbEntryOf(int r)
    {
        A.mov(rax, Q(r));
        A.shr(rax, 12);
        A.and(eax, SoftTlb.Entries - 1);
        A.imul(eax, eax, StateLayout.TlbEntrySize);
        A.add(rax, r12);
    }

    /// <summary>Lock-step: logs each of the RCX elements about to be stored at host RDI (see LogStore). Keeps RCX RSI RDI R8-R10.</summary>
    private void LogElements(int size)
    {
        Label next = A.CreateLabel();
        A.mov(rdx, rdi);
        A.mov(r11, rcx);
        A.Label(ref next);
        A.push(rcx);
        A.mov(rax, __qword_ptr[r14]);
        A.lea(rcx, __[rax + rax * 2]);
        A.lea(rcx, __[r14 + rcx * 8 + 8]);
        A.inc(__qword_ptr[r14]);
        A.mov(__qword_ptr[rcx], rdx);
        _h.LoadZx(Rax, size, Mem(size, Rdx, 0));
        A.mov(__qword_ptr[rcx + 8], rax);
        A.mov(__qword_ptr[rcx + 16], size);
        A.pop(rcx);
        A.add(rdx, size);
        A.dec(r11);
        A.jnz(next);
    }

    private static AssemblerRegister32 Reg32(int r) => r switch
    {
        Rax => eax, Rcx => ecx, Rdx => edx, Rsi => esi, Rdi => edi, R8n => r8d, R9n => r9d, R10n => r10d, _ => r11d,
    };
}
