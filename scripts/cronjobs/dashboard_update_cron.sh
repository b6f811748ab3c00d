#!/bin/sh
# AgencyStack scheduled task: Dashboard update.
#
# Writes the dashboard data (dashboard.json) and the static HTML dashboard (index.html,
# with the "Alerts & Logs" tab) into STATE_DIR/dashboard, or DASHBOARD_DIR when set.
# install writes below the installation this copy belongs to (its interpreter, root, config
# and manifest), so it runs from any directory and in cron's bare environment; values the
# caller already set win (the task's wrapper sets the same ones).
PYTHON=${AGENCY_CRON_PYTHON:-@AGENCY_CRON_PYTHON@}
[ -n "${AGENCY_ROOT:-}" ] || export AGENCY_ROOT=@AGENCY_ROOT@
[ -n "${AGENCY_CRON_CONFIG:-}" ] || export AGENCY_CRON_CONFIG=@AGENCY_CRON_CONFIG@
[ -n "${AGENCY_CRON_MANIFEST:-}" ] || export AGENCY_CRON_MANIFEST=@AGENCY_CRON_MANIFEST@
for arg in "$@"; do
    case "$arg" in
        --alert) ;;  # accepted like the other scripts; the runner alerts on failure
        *) echo "usage: $0 [--alert]" >&2; exit 2 ;;
    esac
done
exec "$PYTHON" -m agency_cron dashboard ${DASHBOARD_DIR:+--out "$DASHBOARD_DIR"}
