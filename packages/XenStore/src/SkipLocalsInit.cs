// Stack buffers (paths, replies) are always written before they are read; skip zeroing them.
[module: System.Runtime.CompilerServices.SkipLocalsInit]
