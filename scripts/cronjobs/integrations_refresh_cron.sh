#!/bin/sh
# AgencyStack scheduled task: Integrations refresh.
#
# Installed by `agency-cron install` into $AGENCY_ROOT/scripts/cronjobs/ and run by its
# task's wrapper, which logs, records and alerts. Runnable by hand; `--alert` sends the
# failure alert when run outside the wrapper (inside it, the runner alerts).
# The work is agency_cron/checks; the components come from the manifest's components:
# and integrations: sections. install writes the interpreter below (the one it ran with).
PYTHON="${AGENCY_CRON_PYTHON:-@AGENCY_CRON_PYTHON@}"
exec "$PYTHON" -m agency_cron.checks integrations "$@"
