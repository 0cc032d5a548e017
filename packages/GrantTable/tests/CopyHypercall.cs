using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// One <c>GNTTABOP_copy</c> hypercall of a test domain (64-bit ABI, paging off) with its operations at
/// <see cref="Buffer"/> in the caller's RAM, and the dispatcher's preemption hook used to act between two operations,
/// as another vCPU of a guest could.
/// </summary>
internal static class CopyHypercall
{
    /// <summary>Guest-physical address of the operations in the caller's RAM.</summary>
    public const ulong Buffer = 20UL << 12;

    /// <summary><c>sizeof(struct gnttab_copy)</c>, 64-bit.</summary>
    public const int OpSize = 40;

    /// <summary>
    /// Writes <paramref name="ops"/> into <paramref name="caller"/>'s memory, makes the call (which must return 0) and
    /// returns each operation's status as the guest reads it back; <paramref name="between"/>(i) runs before operation
    /// i (i ≥ 1).
    /// </summary>
    public static short[] Run(HypercallDispatcher<TestDomain> dispatcher, TestDomain caller, GnttabCopy[] ops, Action<int> between)
    {
        int next = 1;
        dispatcher.PreemptCheck = _ =>
        {
            between(next++);
            return false;
        };
        GnttabCopy[] ran = [.. ops];
        Invoke(dispatcher, caller, ran);
        dispatcher.PreemptCheck = null;
        var statuses = new short[ran.Length];
        for (int i = 0; i < ran.Length; i++)
        {
            statuses[i] = ran[i].Status;
        }

        return statuses;
    }

    /// <summary>
    /// Writes <paramref name="ops"/> into <paramref name="caller"/>'s memory, makes the call with the dispatcher's
    /// preemption hook as it is (the call must return 0) and reads the operations back, statuses included. The call
    /// reaches guest memory through <paramref name="view"/> when given (the caller's own view otherwise).
    /// </summary>
    public static void Invoke(HypercallDispatcher<TestDomain> dispatcher, TestDomain caller, Span<GnttabCopy> ops, IGuestVirtualMemory? view = null)
    {
        Assert.True(caller.TryWrite(Buffer, MemoryMarshal.AsBytes(ops)));
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.Copy;
        args[1] = Buffer;
        args[2] = (ulong)ops.Length;
        HypercallCall<TestDomain> call = dispatcher.CreateCall(caller, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, view ?? caller.Virtual, args);
        Assert.Equal(0, dispatcher.Invoke(ref call));
        Assert.True(caller.TryRead(Buffer, MemoryMarshal.AsBytes(ops)));
    }
}
