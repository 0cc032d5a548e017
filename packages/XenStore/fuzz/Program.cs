// AFL harness for the XenStore message parser and handlers (not built by CI).
//   dotnet tool install --global SharpFuzz.CommandLine
//   dotnet publish -c Release -o out && sharpfuzz out/VmmKit.XenStore.dll
//   afl-fuzz -i seeds -o findings -t 5000 -m none -- dotnet out/VmmKit.XenStore.Fuzz.dll
// Each input is a byte stream as one connection (dom0 or, if the first byte is odd, domain 1) would send it.
using SharpFuzz;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

Fuzzer.OutOfProcess.Run(stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    ReadOnlySpan<byte> input = ms.ToArray();
    var processor = new XsProcessor(new XenStoreQuotas());
    processor.GetOrAddDomain(1);
    uint domid = !input.IsEmpty && (input[0] & 1) != 0 ? 1u : 0u;
    var conn = processor.AddConnection(XsConnectionKind.Stream, domid, null);
    if (!input.IsEmpty)
        input = input[1..];
    while (XsFrameReader.TryRead(input, out var header, out var payload, out int consumed) == XsFrameStatus.Frame)
    {
        processor.Process(conn, header, payload);
        processor.Kicks.Clear();
        input = input[consumed..];
        if (conn.Output.TryTake(out var buffer, out _))
            conn.Output.Return(buffer);
    }
});
