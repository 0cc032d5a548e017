using System.Runtime.CompilerServices;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// Names, in the hypervisor log, each hypercall and sub-operation that answered a guest with -ENOSYS: the calls and
/// sub-ops this hypervisor does not implement (README, "Features"), so that a guest's "not supported" message can be
/// traced to the call behind it. Each (number, sub-op) is logged once per domain, and at most
/// <see cref="MaxDistinct"/> of them, so a guest looping on unknown calls cannot flood the log or grow the set.
/// </summary>
internal static class EnosysLog
{
    /// <summary>How many distinct (number, sub-op) pairs are logged per domain; later ones are counted in one last line.</summary>
    public const int MaxDistinct = 64;

    private static readonly ConditionalWeakTable<Domain, HashSet<ulong>> Seen = new();

    /// <summary>
    /// Called after a VMCALL completed: logs the call if <paramref name="result"/> is -ENOSYS (only the low 32 bits count
    /// unless <paramref name="long64"/>: a 32-bit caller gets EAX). <paramref name="op"/> and <paramref name="argument0"/>
    /// are the number and first argument as the guest passed them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void After(VirtualCpu vcpu, bool long64, ulong op, ulong argument0, ulong result)
    {
        if ((int)result == XenErrno.ENOSYS.Negated() && (!long64 || (long)result == XenErrno.ENOSYS.Negated()))
            Log(vcpu, op, argument0);
    }

    private static void Log(VirtualCpu vcpu, ulong op, ulong argument0)
    {
        var domain = vcpu.Domain;
        uint sub = op < HypercallDispatcher<VirtualCpu>.TableSize ? HypercallDispatcher<VirtualCpu>.SubOpOf((uint)op, argument0) : 0;
        var seen = Seen.GetValue(domain, _ => []);
        lock (seen)
        {
            if (seen.Count > MaxDistinct || !seen.Add((op << 32) | sub))
                return;
            if (seen.Count > MaxDistinct)
            {
                domain.Machine.Log($"d{domain.Id}v{vcpu.Id}: more hypercalls returned -ENOSYS; not logged");
                return;
            }
        }

        string name = op < HypercallDispatcher<VirtualCpu>.TableSize && Enum.IsDefined((HypercallNumber)op)
            ? ((HypercallNumber)op).ToString() : $"#{op}";
        domain.Machine.Log($"d{domain.Id}v{vcpu.Id}: hypercall {name} (op {op}, sub-op {sub}) -> -ENOSYS");
    }
}
