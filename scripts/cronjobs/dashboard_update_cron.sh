#!/bin/sh
# AgencyStack scheduled task: Dashboard update.
#
# Writes the dashboard data (dashboard.json) and the static HTML dashboard (index.html,
# with the "Alerts & Logs" tab) into STATE_DIR/dashboard, or DASHBOARD_DIR when set.
# install writes the interpreter below (the one it ran with).
PYTHON="${AGENCY_CRON_PYTHON:-@AGENCY_CRON_PYTHON@}"
for arg in "$@"; do
    case "$arg" in
        --alert) ;;  # accepted like the other scripts; the runner alerts on failure
        *) echo "usage: $0 [--alert]" >&2; exit 2 ;;
    esac
done
exec "$PYTHON" -m agency_cron dashboard ${DASHBOARD_DIR:+--out "$DASHBOARD_DIR"}
