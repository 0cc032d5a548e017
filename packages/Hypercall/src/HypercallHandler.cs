namespace VmmKit.Hypercall;

/// <summary>
/// A hypercall handler as a delegate (the function-pointer form,
/// <c>delegate*&lt;ref HypercallCall&lt;TCaller&gt;, long&gt;</c>, is also accepted by
/// <see cref="HypercallDispatcher{TCaller}.Register(HypercallNumber, HypercallHandler{TCaller})"/>'s overloads).
/// </summary>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
/// <param name="call">The call: caller, arguments, guest memory, continuation.</param>
/// <returns>The hypercall's result: 0 or a positive value on success, a negated <see cref="XenErrno"/> on failure.</returns>
public delegate long HypercallHandler<TCaller>(ref HypercallCall<TCaller> call);
