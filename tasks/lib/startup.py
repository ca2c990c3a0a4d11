"""The start-up cost of a stage command that imports one large library, kept small.

A stage process under `dvc repro` imports one large library (TensorFlow/Keras in train, Great Expectations in
validate, matplotlib in report). Importing creates hundreds of thousands of long-lived objects, and Python's
cyclic garbage collector walks them again and again while the import runs. `import_large` pauses the collector
for the import; in a stage command it then freezes what exists (`gc.freeze`), so later collections skip the
library's objects. Measured on 2 cores: `import great_expectations` 1.85 s -> 1.5 s, `import keras` 2.5 s ->
2.0 s. In any other process (the Prefect flow, a worker, pytest) nothing is frozen: there, objects alive at
import time are the caller's, and frozen cyclic garbage would never be collected.

Stage commands end the ordinary way (`raise SystemExit(main())`), interpreter teardown included.

TensorFlow's start-up noise is kept out of a stage's output too. Its two C++ libraries each log to file descriptor 2
before their logging is set up, so every line came twice, and TF_CPP_MIN_LOG_LEVEL (even 3) does not silence those
lines. `import_large` holds file descriptor 2 while TensorFlow loads and drops the lines of TENSORFLOW_NOISE; the
train stage does the same around its device probe, whose "failed call to cuInit" every GPU-less machine prints as an
error. Any other line passes through. TF_CPP_MIN_LOG_LEVEL defaults to 2 for what TensorFlow logs later.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

TENSORFLOW_MODULES = ("keras", "tensorflow")
# What TensorFlow 2.20 prints at start-up on a CPU machine, none of it actionable (the device that trained is in
# training.json and the report).
TENSORFLOW_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
    "failed call to cuInit",
)


def import_large(name: str, freeze: bool | None = None) -> ModuleType:
    """Import module `name` with the garbage collector paused; a module already imported is returned as is.

    With `freeze` (by default: in a stage command), garbage from before the import is collected first
    (cheap, the heap is still small) and everything is frozen after it, so later collections skip the
    library's objects.
    """
    if name in sys.modules:
        return importlib.import_module(name)  # waits for an import still running in another thread
    if name in TENSORFLOW_MODULES:  # read once, by TensorFlow's C++ logging, when it loads
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if freeze is None:
        freeze = in_stage_command()
    enabled = gc.isenabled()
    if freeze:
        gc.collect()
    gc.disable()
    quiet = native_stderr_without(TENSORFLOW_NOISE) if name in TENSORFLOW_MODULES else contextlib.nullcontext()
    try:
        with quiet:
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


@contextlib.contextmanager
def native_stderr_without(noise: Sequence[str]) -> Iterator[None]:
    """Hold what is written to file descriptor 2 in the block (by C++ libraries as well as Python), then write it
    out without the lines containing any of `noise`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(pattern in line for pattern in noise)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
