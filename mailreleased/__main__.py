"""Allow ``python -m mailreleased``."""

import sys

from mailreleased.cli import main

sys.exit(main())
