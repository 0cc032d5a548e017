namespace VmmKit.XenStore.Daemon;

/// <summary>
/// xenstored's write rate limit (Xen 4.17's xenstored_domain.c, <c>wrl_*</c>). While any transaction is open, every
/// node an unprivileged domain writes or deletes outside a transaction costs it one write (<c>access_node</c> ->
/// <c>wrl_apply_debit_direct</c>), and each commit while another transaction is open one more
/// (<c>wrl_apply_debit_trans_commit</c>). A domain earns <see cref="Rate"/> writes a second shared by all domains,
/// holds at most <see cref="DomainBurst"/>, and gives any surplus to a reserve (at most <see cref="GlobalBurst"/>)
/// that pays a domain's debts and the first burst of a new domain. In debt, a domain's requests are not read
/// (<c>domain_can_read</c>) until time has paid it back. The privileged domain and sockets are never limited.
/// Credits are in thousandths of a write (<c>WRL_FACTOR</c>). Callers hold the daemon's store lock.
/// </summary>
internal sealed class XsWriteRateLimit(TimeProvider time)
{
    private const long Factor = 1000;

    /// <summary><c>WRL_RATE</c>: writes a second, shared by every domain.</summary>
    public const long Rate = 200 * Factor;

    /// <summary><c>WRL_DBURST</c>: the most writes a domain may save up.</summary>
    public const long DomainBurst = 10 * Factor;

    /// <summary><c>WRL_GBURST</c>: the most the reserve holds.</summary>
    public const long GlobalBurst = 1000 * Factor;

    /// <summary><c>WRL_DBURST * WRL_NEWDOMS</c>: how far new domains may borrow from the reserve.</summary>
    private const long NewDomainsBurst = DomainBurst * 5;

    private const long WriteCost = Factor;
    private const long CreditMax = 1000 * 1000 * 1000;

    private readonly Dictionary<uint, Account> _accounts = [];

    // Domain 0's account (dom0_init introduces it): it took its burst from the reserve and counts in the share.
    private long _reserve = -DomainBurst;

    /// <summary><c>wrl_ntransactions</c>: transactions open on every connection.</summary>
    public int OpenTransactions { get; set; }

    private sealed class Account(long now)
    {
        public long Credit;
        public long Stamp = now;
        public bool Logged;
    }

    /// <summary><c>wrl_ndomains</c>: domain 0 and every unprivileged domain with an account.</summary>
    private int DomainCount => _accounts.Count + 1;

    private long NowMilliseconds => (long)((Int128)time.GetTimestamp() * 1000 / time.TimestampFrequency);

    /// <summary>
    /// <c>domain_can_read</c>'s rate part: whether requests of <paramref name="domid"/> may be read now; if not,
    /// <paramref name="wait"/> is when its credit will be back to zero (<c>wrl_check_timeout</c>).
    /// </summary>
    public bool CanRead(uint domid, out TimeSpan wait)
    {
        wait = TimeSpan.Zero;
        if (domid == 0 || !_accounts.TryGetValue(domid, out var a) || a.Credit >= 0)
            return true;
        Update(a, NowMilliseconds);
        if (a.Credit >= 0)
            return true;
        long ms = -a.Credit * 1000 * DomainCount / Rate;
        wait = TimeSpan.FromMilliseconds(Math.Max(1, ms));
        return false;
    }

    /// <summary>
    /// Charges <paramref name="writes"/> node writes made outside a transaction (<c>wrl_apply_debit_direct</c>):
    /// only while some transaction is open. Returns true when the domain just went into debt for the first time.
    /// </summary>
    public bool DebitDirect(uint domid, long writes) => writes > 0 && OpenTransactions > 0 && Debit(domid, writes);

    /// <summary>
    /// Charges a commit (<c>wrl_apply_debit_trans_commit</c>), counted while the committing transaction is still
    /// open: only when another one is. Returns true when the domain just went into debt for the first time.
    /// </summary>
    public bool DebitCommit(uint domid) => OpenTransactions > 1 && Debit(domid, 1);

    /// <summary><c>wrl_domain_destroy</c>: the released domain's credit goes back to the reserve.</summary>
    public void Forget(uint domid)
    {
        if (_accounts.Remove(domid, out var a))
            Transfer(ref a.Credit, 0, ref _reserve, DomainBurst);
    }

    /// <summary>
    /// <c>wrl_domain_new</c>, when a domain is introduced (or first writes without being introduced): it counts in the
    /// share from now on and borrows its first burst from the reserve.
    /// </summary>
    public void Add(uint domid)
    {
        if (domid != 0)
            _ = AccountOf(domid, NowMilliseconds);
    }

    private Account AccountOf(uint domid, long now)
    {
        if (!_accounts.TryGetValue(domid, out var a))
        {
            a = new Account(now);
            _accounts.Add(domid, a);
            Transfer(ref _reserve, -NewDomainsBurst, ref a.Credit, DomainBurst);
        }
        return a;
    }

    // wrl_apply_debit_actual.
    private bool Debit(uint domid, long writes)
    {
        if (domid == 0)
            return false;
        long now = NowMilliseconds;
        var a = AccountOf(domid, now);
        Update(a, now);
        a.Credit -= writes * WriteCost;
        if (a.Credit >= 0 || a.Logged)
            return false;
        a.Logged = true;
        return true;
    }

    // wrl_credit_update: whole milliseconds of Rate / domains, the debt paid from the reserve, the surplus over a
    // domain's burst given to it (up to its own burst; the rest is lost).
    private void Update(Account a, long now)
    {
        long ms = Math.Clamp(now - a.Stamp, 0, 1000L * 1000 * 1000);
        a.Credit = Math.Min(a.Credit + ms * Rate / (DomainCount * 1000L), CreditMax);
        Transfer(ref _reserve, 0, ref a.Credit, 0);
        long surplus = 0;
        Transfer(ref a.Credit, DomainBurst, ref surplus, CreditMax);
        Transfer(ref surplus, 0, ref _reserve, GlobalBurst);
        a.Stamp = now;
    }

    // wrl_xfer_credit: moves as much as keeps debit >= debitFloor and credit <= creditCeiling.
    private static void Transfer(ref long debit, long debitFloor, ref long credit, long creditCeiling)
    {
        long amount = Math.Min(debit - debitFloor, creditCeiling - credit);
        if (amount > 0)
        {
            debit -= amount;
            credit += amount;
        }
    }
}
