using Microsoft.Extensions.Logging;

namespace VmmKit.XenStore.Tests;

/// <summary>An <see cref="ILogger"/> that keeps every message (level, event id, text) for a test to inspect.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly List<(LogLevel Level, EventId Id, string Text)> _entries = [];

    public IReadOnlyList<(LogLevel Level, EventId Id, string Text)> Entries
    {
        get { lock (_entries) return [.. _entries]; }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        string text = formatter(state, exception) + (exception is null ? "" : $": {exception}");
        lock (_entries)
            _entries.Add((logLevel, eventId, text));
    }
}
