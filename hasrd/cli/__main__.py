"""``python -m hasrd.cli`` (as before the package split; ``python -m hasrd`` is the usual way)."""
import sys

from hasrd.cli import main

sys.exit(main())
