namespace VmmKit.Dom0.Daemon;

/// <summary>
/// One entry of xl.cfg's <c>disk=[...]</c> in the key=value form of xl-disk-configuration(5):
/// <c>format=raw,vdev=xvda,access=rw,target=PATH</c> (target last: it may hold commas). Only raw images.
/// </summary>
internal sealed record DiskSpec(string Target, string Vdev, bool ReadOnly)
{
    /// <summary>Parses <paramref name="spec"/>; relative targets resolve against <paramref name="baseDirectory"/>.</summary>
    public static DiskSpec Parse(string spec, string baseDirectory)
    {
        string? target = null, vdev = null, format = "raw", access = "rw";
        string rest = spec;
        while (rest.Length > 0)
        {
            int eq = rest.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new FormatException($"disk '{spec}': expected key=value");
            string key = rest[..eq].Trim();
            if (key == "target")
            {
                target = rest[(eq + 1)..];   // xl-disk-configuration(5): everything after target= is the path
                break;
            }

            int comma = rest.IndexOf(',', eq);
            string value = (comma < 0 ? rest[(eq + 1)..] : rest[(eq + 1)..comma]).Trim();
            rest = comma < 0 ? "" : rest[(comma + 1)..];
            switch (key)
            {
                case "vdev": vdev = value; break;
                case "format": format = value; break;
                case "access": access = value; break;
                case "devtype" or "backendtype" when value is "disk" or "phy": break;
                default: throw new FormatException($"disk '{spec}': {key}={value} is not supported");
            }
        }

        if (format != "raw")
            throw new FormatException($"disk '{spec}': only format=raw");
        if (access is not ("rw" or "w" or "ro" or "r"))
            throw new FormatException($"disk '{spec}': access={access}");
        if (string.IsNullOrEmpty(target) || string.IsNullOrEmpty(vdev))
            throw new FormatException($"disk '{spec}': vdev= and target= are required");
        return new DiskSpec(Path.GetFullPath(target, baseDirectory), vdev, access is "ro" or "r");
    }
}
