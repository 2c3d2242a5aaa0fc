# Generated from spool/_async/_resources/__init__.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""One module per resource of the API, each a class of the client's methods for it."""
