"""``python -m easyr1.telemetry.dashboards``: write (or ``--check``) the dashboard JSON files."""

import sys

from . import main

sys.exit(main())
