namespace VmmKit.Devices;

/// <summary>
/// The interrupt bus between the local APICs of one VM: an <see cref="IApicIpiSink"/> that resolves
/// an IPI's destination (shorthand, physical ID or broadcast, logical flat/cluster or x2APIC
/// cluster; SDM Vol. 3A §11.6.2, §11.12.10) among the registered APICs and delivers it to each
/// target. Lowest-priority delivery goes to the one target with the lowest processor priority
/// (ties to the lowest APIC ID; SDM Vol. 3A §11.6.2.4, without focus processor checking).
/// Registration is copy-on-write, so vCPU threads send while APICs are added.
/// </summary>
public sealed class ApicBus : IApicIpiSink
{
    private readonly object _lock = new();
    private LocalApic[] _apics = [];

    /// <summary>The registered APICs.</summary>
    public IReadOnlyList<LocalApic> Apics => Volatile.Read(ref _apics);

    /// <summary>Adds <paramref name="apic"/> and makes this bus its <see cref="LocalApic.IpiSink"/>.</summary>
    /// <param name="apic">The APIC of one vCPU.</param>
    /// <exception cref="ArgumentException">An APIC with the same initial APIC ID is already on the bus.</exception>
    public void Add(LocalApic apic)
    {
        ArgumentNullException.ThrowIfNull(apic);
        lock (_lock)
        {
            if (Array.Exists(_apics, a => a.ApicId == apic.ApicId))
                throw new ArgumentException($"APIC ID {apic.ApicId} is already on the bus", nameof(apic));
            Volatile.Write(ref _apics, [.. _apics, apic]);
        }

        apic.IpiSink = this;
    }

    /// <inheritdoc/>
    public void SendIpi(LocalApic source, in ApicInterruptCommand command)
    {
        ArgumentNullException.ThrowIfNull(source);
        var apics = Volatile.Read(ref _apics);
        if (command.DeliveryMode == ApicDeliveryMode.LowestPriority && command.Shorthand != ApicDestinationShorthand.Self)
        {
            LocalApic? lowest = null;
            int lowestPriority = int.MaxValue;
            foreach (var target in apics)
            {
                if (!IsTarget(source, target, in command) || !target.IsSoftwareEnabled)
                    continue;
                int priority = target.ProcessorPriority;
                if (priority < lowestPriority || (priority == lowestPriority && target.ApicId < lowest!.ApicId))
                {
                    lowest = target;
                    lowestPriority = priority;
                }
            }

            lowest?.Receive(in command);
            return;
        }

        foreach (var target in apics)
        {
            if (IsTarget(source, target, in command))
                target.Receive(in command);
        }
    }

    private static bool IsTarget(LocalApic source, LocalApic target, in ApicInterruptCommand command) => command.Shorthand switch
    {
        ApicDestinationShorthand.Self => ReferenceEquals(source, target),
        ApicDestinationShorthand.AllIncludingSelf => true,
        ApicDestinationShorthand.AllExcludingSelf => !ReferenceEquals(source, target),
        _ => target.MatchesDestination(in command),
    };
}
