using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Encodes a generated instruction list whose branch targets (and RIP-relative memory operands) name other
/// instructions by their <see cref="Instruction.IP"/> label ids. A small two-pass layout with Iced's
/// <see cref="Encoder"/>: the generator's forms have fixed lengths, so one layout pass suffices; a short
/// Jcc/JMP that does not reach is widened to rel32 and the layout redone. (Iced's BlockEncoder does the same
/// more generally but costs ~50x more per case, which matters at 100,000 cases.)
/// </summary>
internal sealed class LabelAssembler
{
    private static readonly Dictionary<Code, Code> NearForm = BuildNearForms();

    private readonly ByteWriter _writer = new();
    private readonly Encoder _encoder;
    private readonly Dictionary<ulong, ulong> _address = new();

    public LabelAssembler() => _encoder = Encoder.Create(64, _writer);

    /// <summary>Encodes <paramref name="instructions"/> at <paramref name="rip"/>; null when a LOOP/JRCXZ cannot reach.</summary>
    public byte[]? Assemble(List<Instruction> instructions, ulong rip)
    {
        var work = instructions.ToArray();
        for (int round = 0; round < 8; round++)
        {
            // Layout: with every target set to the instruction itself, each form has its final length.
            _address.Clear();
            ulong ip = rip;
            foreach (var ins in work)
            {
                _address[ins.IP] = ip;
                var probe = Retarget(ins, ip, ip);
                _writer.Bytes.Clear();
                if (!_encoder.TryEncode(probe, ip, out uint length, out string? error))
                    throw new InvalidOperationException($"{ins}: {error}");
                ip += length;
            }
            // Encode with the real targets.
            _writer.Bytes.Clear();
            ip = rip;
            bool widened = false;
            for (int i = 0; i < work.Length; i++)
            {
                var ins = work[i];
                ulong target = TargetLabel(ins) is ulong label ? _address[label] : 0;
                var real = Retarget(ins, ip, target);
                if (!_encoder.TryEncode(real, ip, out uint length, out _))
                {
                    if (!NearForm.TryGetValue(ins.Code, out var near))
                        return null;
                    work[i].Code = near;
                    widened = true;
                    break;
                }
                ip += length;
            }
            if (!widened)
                return _writer.Bytes.ToArray();
        }
        return null;
    }

    private static ulong? TargetLabel(in Instruction ins)
    {
        if (ins.Op0Kind == OpKind.NearBranch64)
            return ins.NearBranch64;
        if (ins.IsIPRelativeMemoryOperand)
            return ins.MemoryDisplacement64;
        return null;
    }

    private static Instruction Retarget(Instruction ins, ulong ip, ulong target)
    {
        ins.IP = ip;
        if (ins.Op0Kind == OpKind.NearBranch64)
            ins.NearBranch64 = target;
        else if (ins.IsIPRelativeMemoryOperand)
            ins.MemoryDisplacement64 = target;
        return ins;
    }

    private static Dictionary<Code, Code> BuildNearForms()
    {
        var shortForms = new Dictionary<Mnemonic, Code>();
        var nearForms = new Dictionary<Mnemonic, Code>();
        foreach (Code code in Enum.GetValues<Code>())
        {
            var op = code.ToOpCode();
            if (op.OpCount != 1 || op.Encoding != EncodingKind.Legacy)
                continue;
            if (op.GetOpKind(0) == OpCodeOperandKind.br64_1 && !code.ToString().Contains("CX", StringComparison.Ordinal))
                shortForms[code.Mnemonic()] = code;
            else if (op.GetOpKind(0) == OpCodeOperandKind.br64_4)
                nearForms[code.Mnemonic()] = code;
        }
        var map = new Dictionary<Code, Code>();
        foreach (var (mnemonic, shortCode) in shortForms)
        {
            if (nearForms.TryGetValue(mnemonic, out var nearCode))
                map[shortCode] = nearCode;
        }
        return map;
    }
}
