using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// XEN_DOMCTL_setvcpucontext / getvcpucontext (src/Host/VcpuContextDomctl.cs) with the x86-64 vcpu_guest_context (its
/// layout is checked against Xen's headers in samples/Dom0/tests/ToolsAbiLayoutTests.cs): a round trip, a guest started
/// with a full register set, and the errnos of xen/common/domctl.c for hostile calls.
/// </summary>
public sealed class VcpuContextTests : IDisposable
{
    private const ulong Ctxt = 256, Out = 8192;

    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly GuestBuffer _memory = new(16384);
    private readonly VirtualCpu _dom0;
    private readonly VirtualCpu _guest;
    private readonly Domain _target;

    public VcpuContextTests()
    {
        var dom0 = new Domain(_machine, 0, "Domain-0", 1, privileged: true, upcall: null);
        _machine.AddDomain(dom0);
        dom0.SetMaxPages(16);
        Assert.Equal(0, dom0.Populate(0));
        Assert.Equal(0, dom0.InitialiseBootVcpu(0x1000, 0));
        _dom0 = dom0.Vcpus[0];
        var guest = new Domain(_machine, 1, "guest", 1, privileged: false, upcall: null);
        _machine.AddDomain(guest);
        guest.SetMaxPages(16);
        Assert.Equal(0, guest.Populate(0));
        Assert.Equal(0, guest.InitialiseBootVcpu(0x1000, 0));
        _guest = guest.Vcpus[0];
        _target = new Domain(_machine, 2, "target", 2, privileged: false, upcall: null);
        _machine.AddDomain(_target);
        _target.SetMaxPages(16);
    }

    public void Dispose() => _machine.Dispose();

    private long Domctl(uint cmd, uint vcpu, ulong ctxt, VirtualCpu? caller = null, ushort domain = 2)
    {
        MemoryMarshal.Write(_memory.Bytes, new XenDomctl
        {
            Cmd = cmd, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domain, VcpuContextVcpu = vcpu, VcpuContextCtxt = ctxt,
        });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl, Rdi = 0 };
        _machine.Hypercalls.Dispatch(caller ?? _dom0, ref regs, GuestX86Mode.Long64, 0, _memory);
        return (long)regs.Rax;
    }

    private long Set(uint vcpu, in VcpuGuestContext c)
    {
        MemoryMarshal.Write(_memory.Bytes.AsSpan((int)Ctxt), in c);
        return Domctl(ToolsAbi.DomctlSetVcpuContext, vcpu, Ctxt);
    }

    private VcpuGuestContext Get(uint vcpu)
    {
        Assert.Equal(0, Domctl(ToolsAbi.DomctlGetVcpuContext, vcpu, Out));
        return MemoryMarshal.Read<VcpuGuestContext>(_memory.Bytes.AsSpan((int)Out));
    }

    /// <summary>A context with every general register distinct, online, at <paramref name="rip"/>.</summary>
    private static unsafe VcpuGuestContext Full(ulong rip)
    {
        var c = new VcpuGuestContext { Flags = ToolsAbi.VgcfOnline };
        c.UserRegs = new CpuUserRegs
        {
            Rax = 0x1111, Rcx = 0x2222, Rdx = 0x3333, Rbx = 0x4444, Rbp = 0x5555, Rsi = 0x6666, Rdi = 0x7777, Rsp = 0x9_0000,
            R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15, Rip = rip, Rflags = 0x46,
        };
        c.DebugReg[7] = 0x403;
        return c;
    }

    [Fact]
    public unsafe void Get_reads_the_control_registers_the_guest_set_itself()
    {
        // The guest sets the CR0/CR4 bits it owns without an exit (paging, WP, PAE, OSFXSR): the register holds them, the
        // read shadow only the host-owned ones. getvcpucontext gave the shadow, the entry state, where Xen's
        // arch_get_info_guest gives the guest's view (guest_cr[]).
        Assert.Equal(0, Set(0, Full(0x10_0000)));
        var vmcs = _target.Vcpus[0].Vmcs;
        vmcs.Write(VmcsField.GuestCr0, vmcs.Read(VmcsField.GuestCr0) | (1ul << 31) | (1ul << 16));
        vmcs.Write(VmcsField.GuestCr4, vmcs.Read(VmcsField.GuestCr4) | (1ul << 5) | (1ul << 9));
        var got = Get(0);
        Assert.Equal((0x8001_0011ul, 0x220ul), (got.CtrlReg[0], got.CtrlReg[4]));
    }

    [Fact]
    public unsafe void Set_then_get_gives_the_same_registers()
    {
        Assert.Equal(XenErrno.ENODATA.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 0, Out));   // no context yet
        var set = Full(0x10_0000);
        Assert.Equal(0, Set(0, set));
        var got = Get(0);
        Assert.Equal(ToolsAbi.VgcfOnline, got.Flags);
        var (s, g) = (set.UserRegs, got.UserRegs);
        Assert.Equal(
            (s.Rax, s.Rcx, s.Rdx, s.Rbx, s.Rbp, s.Rsi, s.Rdi, s.Rsp, s.R8, s.R9, s.R10, s.R11, s.R12, s.R13, s.R14, s.R15, s.Rip, s.Rflags | 2),
            (g.Rax, g.Rcx, g.Rdx, g.Rbx, g.Rbp, g.Rsi, g.Rdi, g.Rsp, g.R8, g.R9, g.R10, g.R11, g.R12, g.R13, g.R14, g.R15, g.Rip, g.Rflags));
        Assert.Equal(0x403ul, got.DebugReg[7]);
        Assert.Equal((0x11ul, 0ul, 0ul), (got.CtrlReg[0], got.CtrlReg[3], got.CtrlReg[4]));   // the PVH entry state: PE | ET, no paging

        // The context read back sets the same state again (get -> set -> get).
        Assert.Equal(0, Set(0, got));
        var again = Get(0);
        Assert.True(MemoryMarshal.AsBytes(new ReadOnlySpan<VcpuGuestContext>(in got)).SequenceEqual(MemoryMarshal.AsBytes(new ReadOnlySpan<VcpuGuestContext>(in again))));

        // Without VGCF_online the vCPU is set but stays down; the domain is not powered off by it.
        Assert.Equal(XenErrno.ENODATA.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 1, Out));
        Assert.Equal(0, Set(1, Full(0x10_0100) with { Flags = 0 }));
        Assert.Equal(0ul, Get(1).Flags);
        Assert.Equal(0x10_0100ul, Get(1).UserRegs.Rip);
        Assert.False(_target.Vcpus[1].IsUp);
        Assert.False(_target.IsShutdown);

        // A NULL context resets the vCPU (vcpu_reset): not initialised, so there is nothing to get.
        Assert.Equal(0, Domctl(ToolsAbi.DomctlSetVcpuContext, 1, 0));
        Assert.Equal(XenErrno.ENODATA.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 1, Out));
    }

    [Fact]
    public void A_guest_started_by_setvcpucontext_runs_with_the_whole_register_set()
    {
        for (ulong gfn = 0x100; gfn < 0x102; gfn++)
            Assert.Equal(0, _target.Populate(gfn));
        byte[] code =
        [
            0xA3, 0x00, 0x10, 0x10, 0x00,           // mov [0x101000], eax
            0x89, 0x0D, 0x04, 0x10, 0x10, 0x00,     // mov [0x101004], ecx
            0x89, 0x15, 0x08, 0x10, 0x10, 0x00,     // mov [0x101008], edx
            0x89, 0x1D, 0x0C, 0x10, 0x10, 0x00,     // mov [0x10100c], ebx
            0x89, 0x2D, 0x10, 0x10, 0x10, 0x00,     // mov [0x101010], ebp
            0x89, 0x35, 0x14, 0x10, 0x10, 0x00,     // mov [0x101014], esi
            0x89, 0x3D, 0x18, 0x10, 0x10, 0x00,     // mov [0x101018], edi
            0x89, 0x25, 0x1C, 0x10, 0x10, 0x00,     // mov [0x10101c], esp
            0x9C,                                   // pushf
            0x8F, 0x05, 0x20, 0x10, 0x10, 0x00,     // pop dword [0x101020]
            0xFA, 0xF4,                             // cli; hlt: the last vCPU down powers the domain off
        ];
        Assert.True(_target.Physical.TryWrite(new GuestPhysicalAddress(0x10_0000), code, out _));
        var c = Full(0x10_0000);
        c.UserRegs.Rsp = 0x10_1800;
        Assert.Equal(0, Set(0, c));
        Assert.True(_target.Vcpus[0].IsUp);
        Assert.False(_target.Vcpus[1].IsUp);

        _target.PauseCount = 0;
        for (int i = 0; i < 100 && _target.State is not (DomainState.Shutdown or DomainState.Crashed); i++)
            _target.Vcpus[0].RunSlice();
        Assert.True(_target.State == DomainState.Shutdown, _target.CrashReport);
        var saved = new uint[9];
        for (int i = 0; i < saved.Length; i++)
            Assert.True(_target.Physical.TryRead(new GuestPhysicalAddress(0x10_1000 + (ulong)(4 * i)), out saved[i]));
        Assert.Equal(new uint[] { 0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, 0x7777, 0x10_1800, 0x46 }, saved);
    }

    [Fact]
    public void Hostile_calls_get_xens_errno()
    {
        var c = Full(0x10_0000);
        Assert.Equal(XenErrno.EINVAL.Negated(), Set(2, c));                                          // vcpu >= max_vcpus
        Assert.Equal(XenErrno.EINVAL.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 2, Out));
        Assert.Equal(XenErrno.EINVAL.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, uint.MaxValue, Out));
        Assert.Equal(XenErrno.EFAULT.Negated(), Domctl(ToolsAbi.DomctlSetVcpuContext, 0, 16000));    // the context runs past the buffer
        Assert.Empty(_target.Vcpus);                                                                 // nothing created by a refused call
        Assert.Equal(XenErrno.EINVAL.Negated(), Set(0, c with { UserRegs = c.UserRegs with { Rip = 1ul << 32 } }));   // no 64-bit RIP outside long mode
        Assert.Equal(0, Set(0, c));
        Assert.Equal(XenErrno.EFAULT.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 0, 16000));
        Assert.Equal(XenErrno.EINVAL.Negated(), Domctl(ToolsAbi.DomctlSetVcpuContext, 0, Ctxt, domain: 0));   // the caller's own domain
        Assert.Equal(XenErrno.EINVAL.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 0, Out, domain: 0));    // the calling vCPU
        Assert.Equal(XenErrno.EPERM.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 0, Out, _guest));
        Assert.Equal(XenErrno.EPERM.Negated(), Domctl(ToolsAbi.DomctlSetVcpuContext, 0, Ctxt, _guest));
        Assert.Equal(XenErrno.ESRCH.Negated(), Domctl(ToolsAbi.DomctlGetVcpuContext, 0, Out, domain: 9));
        Assert.Equal(0x10_0000ul, _target.Vcpus[0].Vmcs.Read(VmcsField.GuestRip));
    }

    [Fact]
    public void A_toolstack_built_domain_is_running_after_setvcpucontext_and_unpause()
    {
        MemoryMarshal.Write(_memory.Bytes, new XenDomctl
        {
            Cmd = ToolsAbi.DomctlCreateDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion,
            CreateDomain = new XenDomctlCreateDomain
            {
                Flags = ToolsAbi.CdfHvm | ToolsAbi.CdfHap, MaxVcpus = 1, MaxGrantFrames = -1, MaxMaptrackFrames = -1, GrantOpts = 2,   // xl's defaults
            },
        });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl, Rdi = 0 };
        _machine.Hypercalls.Dispatch(_dom0, ref regs, GuestX86Mode.Long64, 0, _memory);
        Assert.Equal(0ul, regs.Rax);
        ushort id = MemoryMarshal.Read<XenDomctl>(_memory.Bytes).Domain;
        var d = _machine.FindDomain(id)!;
        d.SetMaxPages(16);
        Assert.Equal(0, d.Populate(0x100));
        var c = new VcpuGuestContext { Flags = ToolsAbi.VgcfOnline };
        c.UserRegs.Rip = 0x10_0000;
        c.UserRegs.Rbx = 0x2000;
        c.UserRegs.Rflags = 2;
        MemoryMarshal.Write(_memory.Bytes.AsSpan((int)Ctxt), in c);
        Assert.Equal(0, Domctl(ToolsAbi.DomctlSetVcpuContext, 0, Ctxt, domain: id));
        Assert.Equal(0, Domctl(ToolsAbi.DomctlUnpauseDomain, 0, 0, domain: id));
        Assert.True(d.Vcpus[0].IsRunnable);
        Assert.True(d.IsRunnable);
        Assert.NotEqual(0u, Host.DomctlHypercall.Info(d).Flags & (uint)DomainInfoFlags.Running);
    }
}
