"""`python -m lsmkv ...`: the lsmkv shell (lsmkv.shell)."""
import sys

from lsmkv.shell import main

if __name__ == "__main__":
    sys.exit(main())
