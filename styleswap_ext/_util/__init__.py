"""Private helpers every layer may use: atomic writes, machine names, torch-free option values,
stage lines, stop signals, output checks, the allocator setting. They import nothing else from styleswap_ext."""
