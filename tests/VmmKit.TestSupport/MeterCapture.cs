using System.Diagnostics.Metrics;

namespace VmmKit.TestSupport;

/// <summary>
/// Sums every <see cref="long"/> measurement of one meter while it lives, keyed "instrument tag=value ..." (tags in the
/// order recorded). A <see cref="MeterListener"/> callback may run on any thread: read it under <c>lock (capture)</c>.
/// </summary>
public sealed class MeterCapture : Dictionary<string, long>, IDisposable
{
    private readonly MeterListener _listener;

    /// <summary>Starts listening to the meter named <paramref name="meterName"/>.</summary>
    public MeterCapture(string meterName)
    {
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == meterName)
                    l.EnableMeasurementEvents(instrument);
            },
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string key = instrument.Name;
            foreach (var tag in tags)
                key += $" {tag.Key}={tag.Value}";
            lock (this)
                this[key] = this.GetValueOrDefault(key) + value;
        });
        _listener.Start();
    }

    /// <summary>Asserts that the README of <c>packages/<paramref name="package"/></c> names each instrument in backticks.</summary>
    public static void AssertDocumented(string package, params string[] names)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")))
            dir = dir.Parent;
        string readme = File.ReadAllText(Path.Combine(dir!.FullName, "packages", package, "README.md"));
        foreach (string name in names)
            Xunit.Assert.Contains($"`{name}`", readme, StringComparison.Ordinal);
    }

    /// <inheritdoc/>
    public void Dispose() => _listener.Dispose();
}
