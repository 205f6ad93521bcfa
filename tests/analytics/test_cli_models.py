"""`omni analytics attribution` and `omni analytics clv` on CSV files, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from omnijourney.cli import app

DATA = Path(__file__).parent / "data"


def omni(*args: str):
    return CliRunner().invoke(app, ["analytics", *args])


def ok_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- attribution -----------------------------------------------------------------------------------------------


def test_attribution_prints_every_model():
    out = ok_json(omni("attribution", "--paths", str(DATA / "paths_synthetic.csv"), "--order", "2"))
    models = out["models"]
    assert set(models) == {"first_touch", "last_touch", "linear", "time_decay", "position_based", "markov",
                           "shapley"}
    assert models["markov"]["order"] == 2
    for name in ("first_touch", "last_touch", "linear", "position_based", "markov", "shapley"):
        assert sum(c["conversions"] for c in models[name]["channels"].values()) == pytest.approx(793, abs=1e-3)
    assert sum(c["value"] for c in models["markov"]["channels"].values()) == pytest.approx(38751.49, abs=0.01)
    assert models["time_decay"] == {"skipped": "needs touch times (a days_before column)"}
    assert set(models["markov"]["channels"]) == {"search", "social", "email", "display", "store"}


def test_attribution_merges_identical_rows_and_takes_times(tmp_path):
    same = write(tmp_path, "p.csv", "path,conversions,value,nulls\na > b,1,10,0\na > b,1,30,2\nb,0,,3\n")
    out = ok_json(omni("attribution", "--paths", same))
    assert out["input"] == {"journeys": 2, "conversions": 2.0, "value": 40.0, "nulls": 5.0}
    assert out["models"]["linear"]["channels"] == {"a": {"conversions": 1.0, "value": 20.0},
                                                   "b": {"conversions": 1.0, "value": 20.0}}
    timed = write(tmp_path, "t.csv", "path,conversions,value,nulls,days_before\n"
                                     "a > b > c,1,90,0,40 > 7 > 0\n"
                                     "d,1,10,0,50\n"
                                     "a > c,0,0,1,3 > 1\n")
    out = ok_json(omni("attribution", "--paths", timed, "--lookback-days", "30", "--half-life-days", "7"))
    assert out["unattributed"]["conversions"] == 1 and out["unattributed"]["value"] == 10
    assert out["models"]["first_touch"]["channels"]["b"] == {"conversions": 1.0, "value": 90.0}
    td = out["models"]["time_decay"]["channels"]
    assert td["c"]["conversions"] == pytest.approx(2 / 3, abs=1e-6)  # 7 days older: half the weight
    out = ok_json(omni("attribution", "--paths", timed, "--position", "0.3,0.5"))
    assert out["models"]["position_based"]["channels"]["b"]["conversions"] == pytest.approx(0.2)


@pytest.mark.parametrize(("content", "fragments"), [
    ("", ["is empty"]),
    ("path,conversions,value,nulls\n", ["no rows"]),
    ("path,value,nulls\na > b,1,0\n", ["line 1", "missing column conversions"]),
    ("path,conversions\na,1\nb,lots\n", ["line 3", "column conversions", "'lots' is not a number"]),
    ("path,conversions,nulls\na,1,-2\n", ["line 2", "column nulls", "negative"]),
    ("path,conversions\na,nan\n", ["line 2", "column conversions", "not a finite number"]),
    ("path,conversions\na,1\n\"b,2\n", ["line 3", "malformed CSV"]),
    ("path,conversions\na,1,7\n", ["line 2", "3 fields, the header has 2"]),
    ("path,conversions\na >  > b,1\n", ["line 2", "column path", "empty channel name"]),
    ("path,conversions\n,1\n", ["line 2", "column path", "empty"]),
    ("path,conversions,days_before\na > b,1,3\n", ["line 2", "column days_before", "1 times for 2 channels"]),
    ("path,conversions,days_before\na > b,1,1 > 3\n", ["line 2", "column days_before", "time order"]),
    ("path,conversions,days_before\na > b,1,x > 3\n", ["line 2", "column days_before", "'x' is not a number"]),
])
def test_attribution_bad_input_is_one_line(tmp_path, content, fragments):
    one_line_error(omni("attribution", "--paths", write(tmp_path, "bad.csv", content)), *fragments)


def test_attribution_bad_options_and_files(tmp_path):
    good = write(tmp_path, "p.csv", "path,conversions\na > b,1\n")
    one_line_error(omni("attribution", "--paths", good, "--lookback-days", "30"), "no days_before column")
    one_line_error(omni("attribution", "--paths", good, "--position", "0.8,0.8"), "--position")
    one_line_error(omni("attribution", "--paths", str(tmp_path / "nope.csv")), "no such file")
    (tmp_path / "latin1.csv").write_bytes(b"path,conversions\ncaf\xe9,1\n")
    one_line_error(omni("attribution", "--paths", str(tmp_path / "latin1.csv")), "not UTF-8")
    assert omni("attribution", "--paths", good, "--order", "0").exit_code == 2  # a usage error, as Click has them


# -- CLV -------------------------------------------------------------------------------------------------------


def orders_csv(tmp_path: Path, customers: int = 400, seed: int = 3) -> str:
    """Orders of customers who buy at their own rate and may stop, over 2024, with a segment each."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01")
    lines = ["customer_id,timestamp,amount,segment"]
    for c in range(customers):
        first = int(rng.integers(0, 60))
        rate = rng.gamma(0.8, 1 / 20)  # purchases a day
        stop = first + int(rng.exponential(250))
        spend = rng.gamma(4, 10)
        day = first
        segment = "vip" if c % 4 == 0 else "regular"
        while day <= min(stop, 365):
            stamp = str(start + day) if c % 2 else f"{start + day}T10:15:00+02:00"
            lines.append(f"c{c},{stamp},{rng.gamma(6, spend / 6):.2f},{segment}")
            day += 1 + int(rng.exponential(1 / rate))
    return write(tmp_path, "orders.csv", "\n".join(lines) + "\n")


def test_clv_fits_and_checks_the_holdout(tmp_path):
    path = orders_csv(tmp_path)
    out = ok_json(omni("clv", "--orders", path, "--calibration-end", "2024-08-31", "--holdout-end", "2024-12-31",
                       "--out", str(tmp_path / "pred.csv")))
    assert out["unit"] == "weeks" and out["customers"] == 400
    assert set(out["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert {"p", "q", "v", "log_likelihood"} <= set(out["gamma_gamma"])
    assert out["holdout"]["length"] == pytest.approx(122 / 7, abs=1e-3)
    assert sum(row["customers"] for row in out["holdout"]["by_frequency"]) == 400
    assert out["holdout"]["predicted"] == pytest.approx(out["holdout"]["actual"], rel=0.35)
    assert {row["segment"] for row in out["segments"]} == {"vip", "regular"}
    assert out["prediction"]["horizon"] == pytest.approx(52.1775)
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "customer_id,expected_purchases,p_alive,expected_spend,clv" and len(lines) == 401
    # the same fit in days: alpha is 7 times larger, the other parameters are the same
    days = ok_json(omni("clv", "--orders", path, "--calibration-end", "2024-08-31", "--unit", "days"))
    assert days["bgnbd"]["alpha"] == pytest.approx(7 * out["bgnbd"]["alpha"], rel=1e-4)
    for name in ("r", "a", "b"):
        assert days["bgnbd"][name] == pytest.approx(out["bgnbd"][name], rel=1e-4)
    assert days["gamma_gamma"]["v"] == pytest.approx(out["gamma_gamma"]["v"], rel=1e-4)


def test_clv_on_cdnow_prints_the_published_estimates(tmp_path):
    from tests.analytics.test_clv import cdnow_orders

    ids, days, amounts = cdnow_orders()
    lines = ["customer_id,timestamp,amount"] + [f"{i},{d},{a}" for i, d, a in zip(ids, days, amounts, strict=True)]
    path = write(tmp_path, "cdnow.csv", "\n".join(lines) + "\n")
    out = ok_json(omni("clv", "--orders", path, "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30"))
    assert {k: round(out["bgnbd"][k], 3) for k in ("r", "alpha", "a", "b")} == {
        "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert round(out["bgnbd"]["log_likelihood"], 1) == -9582.4
    assert {k: round(out["gamma_gamma"][k], 2) for k in ("p", "q", "v")} == {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.mark.parametrize(("content", "args", "fragments"), [
    ("", [], ["is empty"]),
    ("customer_id,timestamp\na,2024-01-01\n", [], ["line 1", "missing column amount"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\na,yesterday,5\n", [],
     ["line 3", "column timestamp", "'yesterday' is not a date"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\na,2024-02-01,12.5EUR\n", [],
     ["line 3", "column amount", "not a number"]),
    ("customer_id,timestamp,amount\na,2024-01-01,-5\n", [], ["line 2", "column amount", "negative"]),
    ("customer_id,timestamp,amount\n,2024-01-01,5\n", [], ["line 2", "column customer_id", "empty"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\na,2024-03-01\n", [], ["line 3", "2 fields"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\nb,2024-03-01,5\n", ["--calibration-end", "2025-01-01"],
     ["--calibration-end 2025-01-01 is outside the orders (2024-01-01 to 2024-03-01)"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\nb,2024-03-01,5\n", ["--calibration-end", "2023-12-31"],
     ["outside the orders"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\n", ["--calibration-end", "31/01/2024"],
     ["--calibration-end", "not a date"]),
    ("customer_id,timestamp,amount\na,2024-01-01,5\n", ["--holdout-end", "2024-01-15"],
     ["--holdout-end 2024-01-15 must be after --calibration-end"]),
])
def test_clv_bad_input_is_one_line(tmp_path, content, args, fragments):
    if "--calibration-end" not in args:
        args = ["--calibration-end", "2024-02-01", *args]
    one_line_error(omni("clv", "--orders", write(tmp_path, "bad.csv", content), *args), *fragments)


def test_clv_with_too_little_data_says_so(tmp_path):
    path = write(tmp_path, "o.csv", "customer_id,timestamp,amount\na,2024-01-01,5\nb,2024-01-02,6\n")
    one_line_error(omni("clv", "--orders", path, "--calibration-end", "2024-01-02"), "no customer made a repeat")
    # one repeat purchase: the purchase model fits; the spend model needs more, and the output says so
    path = write(tmp_path, "o.csv", "customer_id,timestamp,amount\na,2024-01-01,5\nb,2024-01-02,6\n"
                                    "a,2024-01-09,7\nc,2024-01-20,3\n")
    out = ok_json(omni("clv", "--orders", path, "--calibration-end", "2024-01-20"))
    assert "gamma_gamma" not in out
    assert "ran to the edge" in out["warnings"][0] and "spend model" in out["warnings"][1]
