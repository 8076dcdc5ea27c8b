"""A process's peak resident memory, as the benches report it.

A module of its own, importing nothing heavy, so that a bench's child process can read its
peak after running a ``facelab`` command without loading the bench itself (which would add
its own imports to the command's time and memory).
"""

from __future__ import annotations

import resource

__all__ = ["peak_rss_mib"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process image in MiB (Linux ``VmHWM``; elsewhere the
    resource module's maximum). ``VmHWM``, not ``ru_maxrss``, which a child started by fork
    + exec inherits from its parent (a bench holding a million faces would show as every
    child's peak)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
