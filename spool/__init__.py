"""agentspool's user side: the `spool` command and the Python client SDK (httpx only)."""
