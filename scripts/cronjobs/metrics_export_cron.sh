#!/bin/sh
# agency-cron built-in task: Prometheus metrics export (METRICS_TEXTFILE in config.env).
#
# Writes the metrics of every task to METRICS_TEXTFILE atomically (mode 0644), for
# node_exporter's textfile collector. install adds the metrics-export task that runs this
# every minute when METRICS_TEXTFILE is set, and writes below the installation this copy
# belongs to (its interpreter, root, config and manifest), so it runs from any directory
# and in cron's bare environment; values the caller already set win.
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
if [ -z "${METRICS_TEXTFILE:-}" ]; then
    echo "$0: METRICS_TEXTFILE is not set (config.env)" >&2
    exit 2
fi
exec "$PYTHON" -m agency_cron metrics --textfile "$METRICS_TEXTFILE"
