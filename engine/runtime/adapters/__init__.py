"""Model adapters behind one streaming interface (``base``): ``scripted`` (offline and
deterministic: the default and the test double), ``openai`` and ``anthropic``."""
