"""What every command's process shares: a quick exit, and its high-water memory.

``run_command``: interpreter teardown walks every object that torch, transformers and MLflow
created, which took 1.5 to 2 s per process (docs/benchmarks.md). By the time ``main`` returns
or raises, everything it wrote is closed; what is garbage then is collected, and the rest is
exempted from the final collections. atexit handlers still run, and the exit status is
unchanged.
"""

from __future__ import annotations

import gc
from collections.abc import Callable


def run_command(main: Callable[[], object]) -> None:
    try:
        main()
    finally:
        gc.collect()
        gc.freeze()


def high_water_rss_kb(pid: int | str = "self") -> int | None:
    """A process's high-water RSS (Linux's VmHWM), or None where /proc does not say. Not
    ``ru_maxrss``: that one starts from the RSS of the process it was spawned from, so a child
    of a large parent would report the parent's."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
