"""`python -m tests.bench`: see `tests.bench.cli`."""

import sys

from tests.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
