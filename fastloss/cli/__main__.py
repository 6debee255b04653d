"""``python -m fastloss.cli``: the same command line as ``python -m fastloss``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
