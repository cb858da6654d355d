"""``python -m easyr1`` is the same as the ``easyr1`` command."""

import sys

from easyr1.cli import main

sys.exit(main())
