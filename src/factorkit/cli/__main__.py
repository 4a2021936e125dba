"""``python -m factorkit.cli``."""

import sys

from factorkit.cli import main

sys.exit(main())
