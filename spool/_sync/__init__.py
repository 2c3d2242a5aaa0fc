"""The sync client, generated from spool/_async/ (scripts/generate_sdk.py) but for _io.py."""
