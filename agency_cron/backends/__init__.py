"""Scheduler backends. Each reads and writes one target; crontab.py handles every cron form."""
