"""agency-cron: manifest-driven cron for ops teams.

Kept empty on purpose: the runner imports this package on every scheduled run.
"""

__version__ = "0.1.0"
