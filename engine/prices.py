"""The price table: what a model call costs, from the usage its provider reported.

Prices are USD per million tokens, per model. The defaults below are the providers' list prices
for common models; ``SPOOL_PRICES`` (a JSON object, or ``@path`` to a JSON file) adds models or
replaces entries. A model is found by its exact name, else by the longest entry it extends with
a ``-`` (``claude-sonnet-4-20250514`` is priced as ``claude-sonnet-4``). A model the table lacks
costs 0 and its spend is marked ``priced: false``: its tokens still count against token limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import msgspec

from engine.events import Usage

NANOS_PER_USD = 1_000_000_000  # money is kept as integer nano-USD, exact under sums


def usd(cost_nanos: int) -> float:
    """Nano-USD as the float dollars the API shows."""
    return cost_nanos / NANOS_PER_USD


class ModelPrice(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """USD per million tokens. Cache writes cost as input unless given."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float | None = None


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # OpenAI (cache_read: cached input)
    "gpt-4o": ModelPrice(2.50, 10.00, 1.25),
    "gpt-4o-mini": ModelPrice(0.15, 0.60, 0.075),
    "gpt-4.1": ModelPrice(2.00, 8.00, 0.50),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60, 0.10),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40, 0.025),
    "gpt-5": ModelPrice(1.25, 10.00, 0.125),
    "gpt-5-mini": ModelPrice(0.25, 2.00, 0.025),
    "gpt-5-nano": ModelPrice(0.05, 0.40, 0.005),
    "o3": ModelPrice(2.00, 8.00, 0.50),
    "o4-mini": ModelPrice(1.10, 4.40, 0.275),
    # Anthropic (cache_write: 5-minute cache writes)
    "claude-opus-4": ModelPrice(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4-5": ModelPrice(5.00, 25.00, 0.50, 6.25),
    "claude-sonnet-4": ModelPrice(3.00, 15.00, 0.30, 3.75),
    "claude-3-7-sonnet": ModelPrice(3.00, 15.00, 0.30, 3.75),
    "claude-haiku-4-5": ModelPrice(1.00, 5.00, 0.10, 1.25),
    "claude-3-5-haiku": ModelPrice(0.80, 4.00, 0.08, 1.00),
}


class PriceError(ValueError):
    pass


def parse_prices(raw: str) -> dict[str, ModelPrice]:
    """``SPOOL_PRICES``: a JSON object of model -> price, or ``@path`` to a file holding one."""
    text = raw.strip()
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise PriceError(f"cannot read {text[1:]}: {exc.strerror}") from exc
    try:
        prices = msgspec.json.decode(text, type=dict[str, ModelPrice])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PriceError(f"not a JSON object of model -> price: {exc}") from exc
    for model, price in prices.items():
        values = (price.input, price.output, price.cache_read, price.cache_write or 0.0)
        if not all(math.isfinite(v) and 0 <= v <= 1_000_000 for v in values):
            raise PriceError(f"{model}: prices must be between 0 and 1000000 USD per million")
    return prices


class PriceTable:
    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}

    def lookup(self, model: str) -> ModelPrice | None:
        if model in self._prices:
            return self._prices[model]
        extended = [name for name in self._prices if model.startswith(name + "-")]
        return self._prices[max(extended, key=len)] if extended else None

    def cost_nanos(self, model: str, usage: Usage) -> int | None:
        """What ``usage`` costs in USD x 1e9; None when the model has no price."""
        price = self.lookup(model)
        if price is None:
            return None
        write = price.input if price.cache_write is None else price.cache_write
        per_million = (usage.input_tokens * price.input + usage.output_tokens * price.output
                       + usage.cache_read_tokens * price.cache_read
                       + usage.cache_write_tokens * write)
        return round(per_million * (NANOS_PER_USD / 1_000_000))


def billed_tokens(usage: Usage) -> int:
    """The tokens a token limit counts: input, output, cache reads and writes (reasoning is
    part of output)."""
    return (usage.input_tokens + usage.output_tokens + usage.cache_read_tokens
            + usage.cache_write_tokens)
