"""`agency-cron` and `python -m agency_cron`."""

import sys


def main() -> int:
    from agency_cron.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
