"""Run a Python module as `python -m MODULE ARGS...` in this process, then print its peak RSS (with children).

    python benchmarks/peak_rss.py tasks.train fashion-mnist
prints, on its last stderr line: `peak_rss_bytes=N` (self and every child process it waited for).
"""

import resource
import runpy
import sys


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


if __name__ == "__main__":
    module, *arguments = sys.argv[1:]
    sys.argv = [module, *arguments]
    exit_code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        exit_code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    print(f"peak_rss_bytes={peak_rss_bytes()}", file=sys.stderr, flush=True)
    sys.exit(exit_code)
