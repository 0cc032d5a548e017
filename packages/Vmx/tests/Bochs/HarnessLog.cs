using System.Globalization;

namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>Parses the harness's port 0xE9 log.</summary>
internal sealed class HarnessLog
{
    public Dictionary<uint, ulong> Msrs { get; } = [];
    public Dictionary<int, List<VmExit>> Exits { get; } = [];
    /// <summary>Per case, the guest RIP its first VM exit logged.</summary>
    public Dictionary<int, ulong> GuestRipAtExit { get; } = [];
    public List<string> Problems { get; } = [];

    /// <summary>Per case, the watched 8-byte words the harness logged after the case ("A" lines), by physical address.</summary>
    public Dictionary<int, Dictionary<uint, ulong>> Watched { get; } = [];

    public static HarnessLog Parse(IEnumerable<string> lines)
    {
        var log = new HarnessLog();
        foreach (var line in lines)
        {
            var t = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            uint H(int i) => uint.Parse(t[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            switch (t[0])
            {
                case "M":
                    log.Msrs[H(1)] = ((ulong)H(2) << 32) | H(3);
                    break;
                case "m":
                case "D":
                    break;
                case "A":
                {
                    if (!log.Watched.TryGetValue((int)H(1), out var words))
                        log.Watched[(int)H(1)] = words = [];
                    words[H(2)] = ((ulong)H(3) << 32) | H(4);
                    break;
                }
                case "F":
                    log.Add((int)H(1), VmExit.VmFailValid((VmInstructionError)H(2)));
                    break;
                case "I":
                    log.Add((int)H(1), VmExit.VmFailInvalid());
                    break;
                case "X":
                {
                    uint raw = H(2);
                    var exit = new VmExit
                    {
                        RawExitReason = raw,
                        Outcome = (raw & VmExit.EntryFailureBit) != 0 ? VmExitOutcome.EntryFailure : VmExitOutcome.VmExit,
                        Qualification = H(3),
                        GuestPhysicalAddress = ((ulong)H(4) << 32) | H(5),
                        GuestLinearAddress = H(6),
                        InstructionLength = H(7),
                        InstructionInformation = H(8),
                        InterruptionInformation = H(9),
                        InterruptionErrorCode = H(10),
                    };
                    log.Add((int)H(1), exit);
                    if (t.Length > 11)
                        log.GuestRipAtExit.TryAdd((int)H(1), H(11));
                    break;
                }
                default:
                    log.Problems.Add(line);
                    break;
            }
        }
        return log;
    }

    private void Add(int index, VmExit exit)
    {
        if (!Exits.TryGetValue(index, out var list))
            Exits[index] = list = [];
        list.Add(exit);
    }

    /// <summary>The first result of case <paramref name="index"/>: the verdict of its VMLAUNCH.</summary>
    public VmExit Verdict(int index) => Exits.TryGetValue(index, out var l) && l.Count > 0
        ? l[0]
        : throw new InvalidOperationException($"case {index} logged nothing");
}
