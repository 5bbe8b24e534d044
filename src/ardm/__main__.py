"""``python -m ardm``: the command-line interface."""

import sys

from ardm.cli import main

sys.exit(main())
