#!/bin/sh
# AgencyStack scheduled task: Dashboard update.
# Installed by `agency-cron install` into $AGENCY_ROOT/scripts/cronjobs/ and run by the
# task's wrapper, which logs, records and alerts. Runnable by hand; `--alert` is accepted
# for the seed's muscle memory (the wrapper is what turns it into an alert).
# The real checks arrive with agency_cron/checks/; for now the task records that it ran.
set -eu
alert=no
for arg in "$@"; do
    case "$arg" in
        --alert) alert=yes ;;
        *) echo "usage: $0 [--alert]" >&2; exit 2 ;;
    esac
done
echo "dashboard update ran on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ) alert=$alert"
