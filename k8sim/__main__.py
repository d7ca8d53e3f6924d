"""``python -m k8sim``: the local tooling's command line (see :mod:`k8sim.local.cli`)."""

import sys

from k8sim.local.cli import main

if __name__ == "__main__":
    sys.exit(main())
