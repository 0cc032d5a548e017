using System.Globalization;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>TRANSACTION_START and TRANSACTION_END (transaction.c).</summary>
internal sealed unsafe partial class XsProcessor
{
    private static XsError DoTransactionStart(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        // "It is not legal to send non-0 tx_id in TRANSACTION_START."
        if (r.Transaction is not null)
            return XsError.EBUSY;
        // transaction.c: "if (conn->transaction_started > quota_max_transaction)": the quota is checked
        // before counting the new one, so a domain may hold quota + 1 transactions (xenstored 4.17 agrees).
        if (!c.Privileged && c.Transactions.Count > p.QuotasFor(c).Transactions)
            return XsError.ENOSPC;
        uint id = c.AllocateTransactionId();
        c.Transactions.Add(id, new XsTransaction(id, c.DomainId));
        p.WriteRate.OpenTransactions++;
        Span<byte> text = stackalloc byte[12];
        id.TryFormat(text, out int n, default, CultureInfo.InvariantCulture);
        text[n++] = 0;
        return p.Reply(c, ref r, text[..n]);
    }

    /// <summary>
    /// Adds transaction <paramref name="id"/>, restored from a saved state, to <paramref name="c"/>: failed (its contents
    /// are not carried over, so the client's commit gets EAGAIN) and open for the write rate limit. False if the id is
    /// taken.
    /// </summary>
    public bool AdoptFailedTransaction(XsConnection c, uint id)
    {
        if (!c.Transactions.TryAdd(id, new XsTransaction(id, c.DomainId) { Failed = true }))
            return false;
        WriteRate.OpenTransactions++;
        return true;
    }

    /// <summary>Ends every open transaction of <paramref name="c"/> without committing (reset, reconnect, close).</summary>
    public void DropTransactions(XsConnection c)
    {
        foreach (var tx in c.Transactions.Values)
            Store.EndTransaction(tx);
        WriteRate.OpenTransactions -= c.Transactions.Count;
        c.Transactions.Clear();
    }

    /// <summary>TRANSACTION_END <c>T|</c> commits (EAGAIN on conflict), <c>F|</c> discards.</summary>
    private static XsError DoTransactionEnd(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var arg) || arg.Length != 1 || (arg[0] != (byte)'T' && arg[0] != (byte)'F'))
            return XsError.EINVAL;
        var tx = r.Transaction;
        if (tx is null)
            return XsError.ENOENT;
        c.Transactions.Remove(tx.Id);
        p.Store.EndTransaction(tx);
        try
        {
            if (arg[0] == (byte)'T')
            {
                var err = p.Store.CommitTransaction(tx, domid => domid != 0, !c.Privileged);
                if (err != XsError.None)
                    return err;
                // wrl_apply_debit_trans_commit, while this transaction still counts as open.
                if (!c.Privileged && p.WriteRate.DebitCommit(c.DomainId))
                    XsLog.WriteRateLimited(p.Logger, c.DomainId);
            }
        }
        finally
        {
            p.WriteRate.OpenTransactions--;
        }
        return p.Ack(c, ref r);
    }
}
