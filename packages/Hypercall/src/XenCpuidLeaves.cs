namespace VmmKit.Hypercall;

/// <summary>
/// The hypervisor CPUID leaves through which a guest finds Xen (xen/arch-x86/cpuid.h, and
/// <c>cpuid_hypervisor_leaves()</c> in xen/arch/x86/traps.c), as an HVM domain sees them:
/// <list type="bullet">
/// <item><c>base + 0</c>: EAX = largest leaf (<c>base + limit</c>), EBX:ECX:EDX = "XenVMMXenVMM".</item>
/// <item><c>base + 1</c>: EAX = version, major &lt;&lt; 16 | minor.</item>
/// <item><c>base + 2</c>: EAX = 1 hypercall page, EBX = its MSR (<see cref="HypercallPage.MsrIndex"/>), ECX = EDX = 0 for HVM.</item>
/// <item><c>base + 3</c>: time leaf, sub-leaves 0-2 (<see cref="Time"/>).</item>
/// <item><c>base + 4</c>: HVM leaf, sub-leaf 0: EAX = <see cref="XenHvmCpuidFeatures"/>, EBX = vCPU id, ECX = domain id.</item>
/// <item><c>base + 5</c>: PV leaf: all zeros for HVM.</item>
/// </list>
/// </summary>
public sealed class XenCpuidLeaves
{
    /// <summary><c>XEN_CPUID_FIRST_LEAF</c>.</summary>
    public const uint FirstLeaf = 0x40000000;

    /// <summary><c>XEN_CPUID_SIGNATURE_EBX</c>: "XenV".</summary>
    public const uint SignatureEbx = 0x566e6558;

    /// <summary><c>XEN_CPUID_SIGNATURE_ECX</c>: "MMXe".</summary>
    public const uint SignatureEcx = 0x65584d4d;

    /// <summary><c>XEN_CPUID_SIGNATURE_EDX</c>: "nVMM".</summary>
    public const uint SignatureEdx = 0x4d4d566e;

    /// <summary><c>XEN_CPUID_MAX_NUM_LEAVES</c>: the default and largest <see cref="Limit"/>.</summary>
    public const uint MaxNumLeaves = 5;

    private readonly uint _limit = MaxNumLeaves;

    /// <summary>First leaf; 0x40000000 (Xen moves it to 0x40000100 for Viridian domains).</summary>
    public uint Base { get; init; } = FirstLeaf;

    /// <summary>Index of the last leaf reported, clamped to 2..<see cref="MaxNumLeaves"/> as Xen clamps the toolstack's value; 0 selects the default.</summary>
    public uint Limit
    {
        get => _limit;
        init => _limit = value == 0 ? MaxNumLeaves : Math.Clamp(value, 2u, MaxNumLeaves);
    }

    /// <summary>Major version reported in leaf 1 (and by <c>XENVER_version</c>); default 4, the libxen-dev headers' 4.17.</summary>
    public ushort MajorVersion { get; init; } = 4;

    /// <summary>Minor version reported in leaf 1; default 17.</summary>
    public ushort MinorVersion { get; init; } = 17;

    /// <summary>MSR reported in EBX of leaf 2.</summary>
    public uint HypercallMsr { get; init; } = HypercallPage.MsrIndex;

    /// <summary>Optional EAX flags of the HVM leaf; <see cref="XenHvmCpuidFeatures.VcpuIdPresent"/> and <see cref="XenHvmCpuidFeatures.DomidPresent"/> are always added, as Xen does.</summary>
    public XenHvmCpuidFeatures HvmFeatures { get; init; }

    /// <summary>Contents of the time leaf.</summary>
    public XenCpuidTime Time { get; init; }

    /// <summary><c>XENVER_version</c>'s value: <c>major &lt;&lt; 16 | minor</c>.</summary>
    public uint Version => ((uint)MajorVersion << 16) | MinorVersion;

    /// <summary>True when <paramref name="leaf"/> is one of the reported leaves, <c>base</c> to <c>base + limit</c>.</summary>
    /// <param name="leaf">EAX of the CPUID.</param>
    /// <returns>Whether <see cref="TryGetLeaf"/> answers it.</returns>
    public bool Covers(uint leaf) => unchecked(leaf - Base) <= _limit;

    /// <summary>The registers for one CPUID in the hypervisor range.</summary>
    /// <param name="leaf">EAX of the CPUID.</param>
    /// <param name="subleaf">ECX of the CPUID.</param>
    /// <param name="vcpuId">The calling vCPU's id (leaf 4 EBX).</param>
    /// <param name="domainId">The calling domain's id (leaf 4 ECX).</param>
    /// <param name="result">The registers.</param>
    /// <returns>False outside <c>base</c>..<c>base + limit</c>; Xen then leaves the answer it had (zeros for this range).</returns>
    public bool TryGetLeaf(uint leaf, uint subleaf, uint vcpuId, ushort domainId, out XenCpuidResult result)
    {
        uint index = unchecked(leaf - Base);
        result = default;
        if (index > _limit)
            return false;
        switch (index)
        {
            case 0:
                result = new XenCpuidResult(Base + _limit, SignatureEbx, SignatureEcx, SignatureEdx);
                break;
            case 1:
                result = new XenCpuidResult(Version, 0, 0, 0);
                break;
            case 2:
                result = new XenCpuidResult(1, HypercallMsr, 0, 0);
                break;
            case 3:
                result = subleaf switch
                {
                    0 => new XenCpuidResult(Time.Flags, Time.TscMode, Time.TscKhz, Time.Incarnation),
                    1 => new XenCpuidResult((uint)Time.TscOffset, (uint)(Time.TscOffset >> 32), Time.MulFrac, unchecked((uint)(int)Time.Shift)),
                    2 => new XenCpuidResult(Time.HostTscKhz, 0, 0, 0),
                    _ => default,
                };
                break;
            case 4:
                if (subleaf == 0)
                {
                    uint eax = (uint)(HvmFeatures | XenHvmCpuidFeatures.VcpuIdPresent | XenHvmCpuidFeatures.DomidPresent);
                    result = new XenCpuidResult(eax, vcpuId, domainId, 0);
                }
                break;
            default: // 5: PV-specific parameters, zero for HVM.
                break;
        }
        return true;
    }
}

/// <summary>
/// The time leaf, <c>base + 3</c> (xen/arch-x86/cpuid.h): sub-leaf 0 = (flags, tsc_mode, guest
/// TSC kHz, incarnation), 1 = (offset low, offset high, tsc→ns multiplier, shift), 2 = host TSC kHz.
/// </summary>
public readonly record struct XenCpuidTime
{
    /// <summary>Sub-leaf 0 EAX: bit 0 TSC emulated, bit 1 host TSC reliable, bit 2 RDTSCP available.</summary>
    public uint Flags { get; init; }
    /// <summary>Sub-leaf 0 EBX: 0 default, 1 always emulate, 2 never emulate, 3 never emulate + TSC_AUX.</summary>
    public uint TscMode { get; init; }
    /// <summary>Sub-leaf 0 ECX: guest TSC frequency in kHz.</summary>
    public uint TscKhz { get; init; }
    /// <summary>Sub-leaf 0 EDX: incarnation (migration count).</summary>
    public uint Incarnation { get; init; }
    /// <summary>Sub-leaf 1 EAX:EBX: TSC offset.</summary>
    public ulong TscOffset { get; init; }
    /// <summary>Sub-leaf 1 ECX: multiplier for TSC→ns conversion.</summary>
    public uint MulFrac { get; init; }
    /// <summary>Sub-leaf 1 EDX: shift for TSC→ns conversion (sign-extended).</summary>
    public sbyte Shift { get; init; }
    /// <summary>Sub-leaf 2 EAX: host TSC frequency in kHz.</summary>
    public uint HostTscKhz { get; init; }
}
