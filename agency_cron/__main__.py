"""`agency-cron` and `python -m agency_cron`."""

import sys


def main() -> int:
    from agency_cron import fastpath

    argv = sys.argv[1:]
    answered = fastpath.try_install(argv)  # a no-op re-install, without the heavy imports
    if answered is not None:
        return answered
    if fastpath.enabled(argv):
        fastpath.start_recording()  # what this install reads becomes its fingerprint
    import gc

    from agency_cron.cli import main as cli_main

    # Everything imported so far lives until exit: keep the collector from walking it
    # again at teardown (measured: 150-220 ms down to ~40 ms per command).
    gc.freeze()
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
