"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/api/test_schemathesis.py: an NDJSON
body (an export to import) is sent as the text the document's string schema generates."""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
