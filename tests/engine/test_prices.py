"""The price table: lookups by exact name or by the longest entry a model name extends, costs
in USD x 1e9 from every kind of token, and overrides over the defaults."""

from __future__ import annotations

from engine.events import Usage
from engine.prices import DEFAULT_PRICES, ModelPrice, PriceTable, billed_tokens


def test_a_model_is_found_by_name_or_by_the_longest_entry_it_extends() -> None:
    table = PriceTable()
    assert table.lookup("gpt-4o") == DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("claude-sonnet-4-20250514") == DEFAULT_PRICES["claude-sonnet-4"]
    assert table.lookup("claude-opus-4-5-20251101") == DEFAULT_PRICES["claude-opus-4-5"]
    assert table.lookup("gpt-4oops") is None  # not a "-" extension
    assert table.lookup("llama3") is None


def test_cost_counts_every_kind_of_token_at_its_price() -> None:
    table = PriceTable({"m": ModelPrice(input=3.0, output=15.0, cache_read=0.3,
                                        cache_write=3.75)})
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=10_000,
                  cache_write_tokens=2000, reasoning_tokens=400)
    # (1000 * 3 + 500 * 15 + 10000 * 0.3 + 2000 * 3.75) / 1e6 USD = 0.021 USD
    assert table.cost_nanos("m", usage) == 21_000_000
    assert billed_tokens(usage) == 13_500  # reasoning is part of output already
    assert table.cost_nanos("unknown", usage) is None


def test_cache_writes_cost_as_input_unless_priced_and_overrides_win() -> None:
    table = PriceTable({"gpt-4o": ModelPrice(input=1.0, output=1.0)})
    assert table.cost_nanos("gpt-4o", Usage(cache_write_tokens=1_000_000)) == 10**9
    assert table.cost_nanos("gpt-4o", Usage(cache_read_tokens=1_000_000)) == 0
    assert PriceTable().cost_nanos("gpt-4o", Usage(input_tokens=1)) == 2500  # $2.50 / 1M
