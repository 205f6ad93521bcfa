"""The demo retailer: deterministic, realistic data for ``omni demo`` and the benchmarks."""
