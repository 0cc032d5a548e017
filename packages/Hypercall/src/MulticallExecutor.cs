namespace VmmKit.Hypercall;

/// <summary>
/// <c>do_multicall()</c> (xen/common/multicall.c): runs each entry through the dispatcher, writes
/// each result back, refuses a nested multicall with -EINVAL in that entry, stops with -EFAULT on
/// an unreadable list, and turns a preempted entry (or a preemption request between entries) into
/// a continuation of the multicall from that entry.
/// </summary>
internal static class MulticallExecutor
{
    public static long Run<TCaller>(ref HypercallCall<TCaller> call)
    {
        // "Multicall reentry is disallowed": Xen tracks MCSF_in_multicall per vCPU.
        if (call.InMulticall)
            return XenErrno.EINVAL.Negated();

        ulong list = call.Argument(0);
        uint count = (uint)call.Argument(1);
        bool native = call.Abi == HypercallAbi.Native64;
        ulong entrySize = native ? 64UL : 32UL;
        HypercallDispatcher<TCaller> dispatcher = call.Dispatcher;

        uint i;
        for (i = 0; i < count; i++)
        {
            if (i != 0 && call.PreemptCheck())
                break;

            uint op;
            HypercallArguments args = default;
            if (native)
            {
                if (!call.TryCopyFromGuest(list, out MulticallEntry entry))
                    return XenErrno.EFAULT.Negated();
                op = entry.Op > uint.MaxValue ? uint.MaxValue : (uint)entry.Op;
                args = entry.Args;
            }
            else
            {
                if (!call.TryCopyFromGuest(list, out CompatMulticallEntry entry))
                    return XenErrno.EFAULT.Negated();
                op = entry.Op;
                for (int k = 0; k < HypercallArguments.Count; k++)
                    args[k] = entry.Args[k];
            }

            HypercallCall<TCaller> sub = dispatcher.CreateMulticallEntry(in call, op, args);
            long result = dispatcher.Invoke(ref sub);

            // __copy_field_to_guest(call_list, &mcs->call, result)
            bool written = native
                ? call.TryCopyToGuest(list + 8, unchecked((ulong)result))
                : call.TryCopyToGuest(list + 4, unchecked((uint)result));
            if (!written)
                return XenErrno.EFAULT.Negated();

            if (sub.Preempted)
            {
                // Copy the sub-call continuation (its updated arguments) back, then continue the
                // multicall from this entry.
                bool copied;
                if (native)
                {
                    var entry = new MulticallEntry { Op = op, Result = unchecked((ulong)result), Args = sub.Arguments };
                    copied = call.TryCopyToGuest(list, in entry);
                }
                else
                {
                    var entry = new CompatMulticallEntry { Op = op, Result = unchecked((uint)result) };
                    HypercallArguments updated = sub.Arguments;
                    for (int k = 0; k < HypercallArguments.Count; k++)
                        entry.Args[k] = (uint)updated[k];
                    copied = call.TryCopyToGuest(list, in entry);
                }
                if (!copied)
                    return XenErrno.EFAULT.Negated();
                break;
            }

            list += entrySize;
        }

        if (i == count)
            return 0;
        return call.CreateContinuation(HypercallNumber.Multicall, [list, count - i]);
    }
}
