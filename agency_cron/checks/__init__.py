"""The built-in tasks' real work: health checks, backup verification, integration refreshes.

Components and integrations are declared in the manifest (`components:` and `integrations:`),
validated by `models.validate_section`, run by `health`, `backup` and `integrations`, and
driven from cron by `python -m agency_cron.checks {health|backup|integrations}` (see cli.py).
Every check returns a `common.CheckResult`; nothing here prints except the CLI.
"""
