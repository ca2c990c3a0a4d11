"""The start-up cost of a stage command that imports one large library, kept small.

A stage process under `dvc repro` imports one large library (TensorFlow/Keras in train, Great Expectations in
validate, matplotlib in report). Importing creates hundreds of thousands of long-lived objects, and Python's
cyclic garbage collector walks them again and again while the import runs. `import_large` pauses the collector
for the import; in a stage command it then freezes what exists (`gc.freeze`), so later collections skip the
library's objects. Measured on 2 cores: `import great_expectations` 1.85 s -> 1.5 s, `import keras` 2.5 s ->
2.0 s. In any other process (the Prefect flow, a worker, pytest) nothing is frozen: there, objects alive at
import time are the caller's, and frozen cyclic garbage would never be collected.

Stage commands end the ordinary way (`raise SystemExit(main())`), interpreter teardown included.
"""

from __future__ import annotations

import gc
import importlib
import sys
from types import ModuleType


def import_large(name: str, freeze: bool | None = None) -> ModuleType:
    """Import module `name` with the garbage collector paused; a module already imported is returned as is.

    With `freeze` (by default: in a stage command), garbage from before the import is collected first
    (cheap, the heap is still small) and everything is frozen after it, so later collections skip the
    library's objects.
    """
    if name in sys.modules:
        return importlib.import_module(name)  # waits for an import still running in another thread
    if freeze is None:
        freeze = in_stage_command()
    enabled = gc.isenabled()
    if freeze:
        gc.collect()
    gc.disable()
    try:
        module = importlib.import_module(name)
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
    return module


def in_stage_command() -> bool:
    """True in a `python -m tasks.<stage>` process, where the stage module is `__main__`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name.startswith("tasks.")
