"""``python -m k8sim``: the local tooling's command line (see :mod:`k8sim.local.cli`)."""

import sys

from k8sim.local.cli import main

sys.exit(main())
