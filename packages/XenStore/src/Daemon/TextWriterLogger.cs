using Microsoft.Extensions.Logging;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The logger <see cref="XenStoreDaemon.RunMainAsync"/> uses when its host passes none: one line per message on the
/// host's error writer (what xenstored's own stderr output looks like), exceptions after it.
/// </summary>
internal sealed class TextWriterLogger(TextWriter writer) : ILogger
{
    private readonly Lock _lock = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
            return;
        string line = formatter(state, exception);
        lock (_lock)
        {
            if (exception is null)
                writer.WriteLine(line);
            else
                writer.WriteLine($"{line}: {exception}");
            writer.Flush();
        }
    }
}
