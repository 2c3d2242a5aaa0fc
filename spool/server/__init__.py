"""The server side of the ``spool`` command: what needs the engine (the SDK in ``spool`` needs
none of it)."""
