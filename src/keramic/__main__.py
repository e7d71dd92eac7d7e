"""`python -m keramic` runs the `keramic` command (the same as the console script)."""

import sys

from keramic.cli import main

sys.exit(main())
