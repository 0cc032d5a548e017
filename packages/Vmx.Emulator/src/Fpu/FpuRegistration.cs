using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>Handler-table entries of the x87, MMX and state-management instructions (called from the SSE seam).</summary>
internal static unsafe class FpuRegistration
{
    /// <summary>Registers every form; builds the x87 thunks.</summary>
    public static void Register(HandlerEntry[] table)
    {
        foreach (Code code in Enum.GetValues<Code>())
        {
            var op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.Mode64 && !op.Mode32)
                continue;
            RegisterOne(table, code, op);
        }
        X87Thunks.Build();
        Mmx.Register(table);
    }

    private static void RegisterOne(HandlerEntry[] t, Code code, OpCodeInfo op)
    {
        const byte ends = HandlerFlags.EndsBlock;
        switch (code)
        {
            case Code.Wait: HandlerTable.Set(t, code, &X87.Wait); return;
            case Code.Fnstsw_AX: HandlerTable.Set(t, code, &X87.StoreStatusAx, sub: 0); return;
            case Code.Fstsw_AX: HandlerTable.Set(t, code, &X87.StoreStatusAx, sub: 1); return;
            case Code.Fnstsw_m2byte: HandlerTable.Set(t, code, &X87.StoreWord, sub: 0); return;
            case Code.Fstsw_m2byte: HandlerTable.Set(t, code, &X87.StoreWord, sub: 1); return;
            case Code.Fnstcw_m2byte: HandlerTable.Set(t, code, &X87.StoreWord, sub: 2); return;
            case Code.Fstcw_m2byte: HandlerTable.Set(t, code, &X87.StoreWord, sub: 3); return;
            case Code.Fldcw_m2byte: HandlerTable.Set(t, code, &X87.LoadControlWord); return;
            case Code.Fninit: HandlerTable.Set(t, code, &X87.Initialize, sub: 0); return;
            case Code.Finit: HandlerTable.Set(t, code, &X87.Initialize, sub: 1); return;
            case Code.Fnclex: HandlerTable.Set(t, code, &X87.ClearExceptions, sub: 0); return;
            case Code.Fclex: HandlerTable.Set(t, code, &X87.ClearExceptions, sub: 1); return;
            case Code.Fnop: HandlerTable.Set(t, code, &X87.NoOperation, sub: 2); return;
            // 8087/80287 control instructions: no-ops on the 80387 and later (FNENI, FNDISI, FNSETPM).
            case Code.Fneni or Code.Fndisi or Code.Fnsetpm: HandlerTable.Set(t, code, &X87.NoOperation, sub: 0); return;
            case Code.Feni or Code.Fdisi or Code.Fsetpm: HandlerTable.Set(t, code, &X87.NoOperation, sub: 1); return;
            case Code.Fnstenv_m28byte: HandlerTable.Set(t, code, &X87Environment.Store, sub: 0); return;
            case Code.Fstenv_m28byte: HandlerTable.Set(t, code, &X87Environment.Store, sub: 1); return;
            case Code.Fnstenv_m14byte: HandlerTable.Set(t, code, &X87Environment.Store, sub: 2); return;
            case Code.Fstenv_m14byte: HandlerTable.Set(t, code, &X87Environment.Store, sub: 3); return;
            case Code.Fnsave_m108byte: HandlerTable.Set(t, code, &X87Environment.Save, sub: 0); return;
            case Code.Fsave_m108byte: HandlerTable.Set(t, code, &X87Environment.Save, sub: 1); return;
            case Code.Fnsave_m94byte: HandlerTable.Set(t, code, &X87Environment.Save, sub: 2); return;
            case Code.Fsave_m94byte: HandlerTable.Set(t, code, &X87Environment.Save, sub: 3); return;
            case Code.Fldenv_m28byte: HandlerTable.Set(t, code, &X87Environment.Load, sub: 0); return;
            case Code.Fldenv_m14byte: HandlerTable.Set(t, code, &X87Environment.Load, sub: 2); return;
            case Code.Frstor_m108byte: HandlerTable.Set(t, code, &X87Environment.Restore, sub: 0); return;
            case Code.Frstor_m94byte: HandlerTable.Set(t, code, &X87Environment.Restore, sub: 2); return;
            case Code.Fxsave_m512byte: HandlerTable.Set(t, code, &StateArea.Fxsave, sub: 0); return;
            case Code.Fxsave64_m512byte: HandlerTable.Set(t, code, &StateArea.Fxsave, sub: 1); return;
            case Code.Fxrstor_m512byte: HandlerTable.Set(t, code, &StateArea.Fxrstor, sub: 0, flags: ends); return;
            case Code.Fxrstor64_m512byte: HandlerTable.Set(t, code, &StateArea.Fxrstor, sub: 1, flags: ends); return;
            case Code.Xsave_mem or Code.Xsaveopt_mem: HandlerTable.Set(t, code, &StateArea.Xsave, sub: 0); return;
            case Code.Xsave64_mem or Code.Xsaveopt64_mem: HandlerTable.Set(t, code, &StateArea.Xsave, sub: 1); return;
            case Code.Xrstor_mem: HandlerTable.Set(t, code, &StateArea.Xrstor, sub: 0, flags: ends); return;
            case Code.Xrstor64_mem: HandlerTable.Set(t, code, &StateArea.Xrstor, sub: 1, flags: ends); return;
            case Code.Xgetbv: HandlerTable.Set(t, code, &ExtendedControlRegisters.Xgetbv); return;
            case Code.Xsetbv: HandlerTable.Set(t, code, &ExtendedControlRegisters.Xsetbv, flags: ends); return;
        }
        if (!IsComputingX87(code, op))
            return;
        X87FormFlags flags = 0;
        bool memory = false;
        for (int k = 0; k < op.OpCount; k++)
        {
            switch (op.GetOpKind(k))
            {
                case OpCodeOperandKind.sti_opcode: flags |= X87FormFlags.StackRegister; break;
                case OpCodeOperandKind.mem: memory = true; break;
                case OpCodeOperandKind.st0: break;
                default: return;
            }
        }
        Mnemonic m = code.Mnemonic();
        if (memory)
        {
            flags |= m is Mnemonic.Fst or Mnemonic.Fstp or Mnemonic.Fist or Mnemonic.Fistp or Mnemonic.Fisttp or Mnemonic.Fbstp
                ? X87FormFlags.MemoryWrite
                : X87FormFlags.MemoryRead;
        }
        if (m is Mnemonic.Fcmovb or Mnemonic.Fcmove or Mnemonic.Fcmovbe or Mnemonic.Fcmovu or Mnemonic.Fcmovnb
            or Mnemonic.Fcmovne or Mnemonic.Fcmovnbe or Mnemonic.Fcmovnu)
            flags |= X87FormFlags.ReadsFlags;
        if (m is Mnemonic.Fcomi or Mnemonic.Fcomip or Mnemonic.Fucomi or Mnemonic.Fucomip)
            flags |= X87FormFlags.WritesFlags;
        X87Thunks.Add(code, flags);
        HandlerTable.Set(t, code, &X87.Execute);
    }

    /// <summary>The x87 forms a thunk executes: every FPU/FPU387/CMOV-x87/SSE3 (FISTTP) form not handled above.</summary>
    private static bool IsComputingX87(Code code, OpCodeInfo op)
    {
        // Iced gives the register-only forms (D9 E8 FLD1, D8 C0+i FADD ...) as two-byte opcodes.
        uint escape = op.OpCodeLength == 2 ? op.OpCode >> 8 : op.OpCode;
        if (op.Table != OpCodeTableKind.Normal || escape is < 0xD8 or > 0xDF)
            return false;
        // The thunk runs the form in 64-bit mode; forms Iced knows only outside it (undocumented aliases) stay #UD.
        if (!op.Mode64)
            return false;
        // Cyrix/IIT-only and 80287XL-only encodings Iced decodes only on request: #UD here.
        return code is not (Code.Frstpm or Code.Fstdw_AX or Code.Fstsg_AX or Code.Fnstdw_AX or Code.Fnstsg_AX
            or Code.Ftstp or Code.Frint2 or Code.Frichop or Code.Frinear);
    }
}
