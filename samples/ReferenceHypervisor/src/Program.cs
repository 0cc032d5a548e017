Console.Error.WriteLine("vmmkit-hv: the reference hypervisor is not built yet; see README.md for the roadmap.");
return 2;
