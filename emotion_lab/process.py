"""How every command's process ends: its ``main``, then a quick exit.

Interpreter teardown walks every object that torch, transformers and MLflow created, which took
1.5 to 2 s per process (docs/benchmarks.md). By the time ``main`` returns or raises, everything
it wrote is closed; what is garbage then is collected, and the rest is exempted from the final
collections. atexit handlers still run, and the exit status is unchanged.
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
