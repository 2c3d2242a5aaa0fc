"""The async client: the source the sync one (spool/_sync/) is generated from."""
