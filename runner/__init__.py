"""Conveyor: a self-hosted CI/CD runner. See docs/architecture.md for the map."""

__version__ = "0.1.0"
