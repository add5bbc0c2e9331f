"""``python -m benchmarks [--quick] [--only NAMES] [--output PATH]`` (``make bench``)."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
