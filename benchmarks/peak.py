"""Run a Python script as __main__ and report its peak memory: `python -m benchmarks.peak main.py ARGS...`.

The last stdout line is PEAK_RSS_MB=<self> <workers>: the process's own peak and its largest child's
(local worker processes), from getrusage, so every variant is measured the same way.
"""

import resource
import runpy
import sys

if __name__ == "__main__":
    script, sys.argv = sys.argv[1], sys.argv[1:]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"PEAK_RSS_MB={own:.0f} {workers:.0f}", flush=True)
