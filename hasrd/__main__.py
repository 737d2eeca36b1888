"""``python -m hasrd`` (and ``accelerate launch -m hasrd``): the hasrd command line."""
import sys

from hasrd.cli import main

if __name__ == "__main__":
    sys.exit(main())
