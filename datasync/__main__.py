"""``python -m datasync``: see :mod:`datasync.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
