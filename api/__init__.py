"""agentspool's HTTP layer: a thin Starlette app that parses, calls the engine and encodes."""
