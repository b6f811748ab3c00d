"""Bundled AgencyStack task scripts, shipped as package data (see pyproject.toml)."""
