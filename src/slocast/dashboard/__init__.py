"""Streamlit dashboard (``slocast dashboard``); the app lives in :mod:`slocast.dashboard.app`."""

from pathlib import Path

__all__ = ["APP"]

APP = Path(__file__).with_name("app.py")
