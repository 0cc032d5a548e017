// The control domain is built in a later stage of the roadmap (toolstack, xenstored, PV backends).
Console.Error.WriteLine("vmmkit-xl: the control domain is not built yet; see README.md for the roadmap.");
return 2;
