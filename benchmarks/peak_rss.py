"""Peak memory of this process, and a wrapper that reports a command's own peak.

``ru_maxrss`` is no good for a child: Linux carries the high-water mark across ``fork`` and
``exec``, so a child of a 100 MB benchmark process reports at least 100 MB whatever it does.
``VmHWM`` in ``/proc/self/status`` belongs to the current address space only.

    python -m benchmarks.peak_rss manage.py khaime_sync --offline

runs ``manage.py`` in this process and, at exit, prints ``PEAK_RSS_KB=<n>`` on stderr.
"""

from __future__ import annotations

import atexit
import runpy
import sys

MARKER = "PEAK_RSS_KB="


def peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def parse(output: str) -> int | None:
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            return int(line[len(MARKER) :])
    return None


def _report() -> None:
    print(f"{MARKER}{peak_rss_kb()}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    script, *arguments = sys.argv[1:]
    sys.argv = [script, *arguments]
    atexit.register(_report)
    runpy.run_path(script, run_name="__main__")
