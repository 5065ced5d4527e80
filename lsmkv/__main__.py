"""`python -m lsmkv ...`: the lsmkv shell (lsmkv.cli.shell)."""
import sys

from lsmkv.cli.shell import main

if __name__ == "__main__":
    sys.exit(main())
