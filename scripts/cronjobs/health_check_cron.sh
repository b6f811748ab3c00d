#!/bin/sh
# AgencyStack scheduled task: Health check.
#
# Installed by `agency-cron install` into $AGENCY_ROOT/scripts/cronjobs/ and run by its
# task's wrapper, which logs, records and alerts. Runnable by hand; `--alert` sends the
# failure alert when run outside the wrapper (inside it, the runner alerts).
# The work is agency_cron/checks; the components come from the manifest's components:
# and integrations: sections.
# install writes below the installation this copy belongs to (its interpreter, root, config
# and manifest), so it runs from any directory and in cron's bare environment; values the
# caller already set win (the task's wrapper sets the same ones).
PYTHON=${AGENCY_CRON_PYTHON:-@AGENCY_CRON_PYTHON@}
[ -n "${AGENCY_ROOT:-}" ] || export AGENCY_ROOT=@AGENCY_ROOT@
[ -n "${AGENCY_CRON_CONFIG:-}" ] || export AGENCY_CRON_CONFIG=@AGENCY_CRON_CONFIG@
[ -n "${AGENCY_CRON_MANIFEST:-}" ] || export AGENCY_CRON_MANIFEST=@AGENCY_CRON_MANIFEST@
exec "$PYTHON" -m agency_cron.checks health "$@"
