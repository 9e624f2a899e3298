"""``python -m simulator``: same as ``gridloop sim``."""

import sys

from .cli import main

sys.exit(main())
