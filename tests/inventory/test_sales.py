"""Counter sales: what a till is told when a sale is refused."""

from __future__ import annotations

import pytest

from omnijourney.inventory import reservations, stock
from tests.factories_inventory import network, stock_up


def test_a_refused_sale_names_the_callers_line_even_when_lines_repeat(db):
    network(db)
    stock_up(db, {("TEE-M", "S01"): 5, ("TEE-S", "S01"): 1})
    with pytest.raises(stock.OutOfStock) as refused, db.transaction() as s:
        reservations.sell(s, channel_code="S01", lines=[("TEE-M", "S01", 1), ("TEE-M", "S01", 1),
                                                        ("TEE-S", "S01", 2)])
    assert refused.value.field == "lines[2].quantity"
