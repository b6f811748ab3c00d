"""`python -m agency_cron.checks {health|backup|integrations}` (see cli.py)."""

import sys

from agency_cron.checks.cli import main

if __name__ == "__main__":
    sys.exit(main())
