"""Nightshift: a GitHub App that runs coding agents overnight and reports in the morning."""

__version__ = "0.1.0"
