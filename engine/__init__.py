"""agentspool's core: the event store, fan-out and runtime. Never imports starlette."""
