"""Apache Spark as an analytics backend (the optional extra ``omnijourney[spark]``): the same Ibis expressions on
PySpark, for users who outgrow one machine.

:func:`spark_tables` loads the DuckDB store's tables (``events``, ``people``) into a Spark session as temporary
views and answers :class:`~omnijourney.analytics.tables.Tables` on them. ``properties`` becomes a Spark
``map<string,string>`` (Ibis' JSON functions on PySpark go through Python UDFs that do not read Spark's JSON); the
analyses' property accessors read a map value as the property's text. A real deployment would write the events to
Parquet or a table of its lake from the same feed, and point :func:`tables_on` at that session.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omnijourney.analytics.store import Store
from omnijourney.analytics.tables import Tables

_session: Any = None
_lock = threading.Lock()


def session() -> Any:
    """The process's local Spark session (two cores, UTC, no UI), started on first use."""
    global _session
    with _lock:
        if _session is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers with this interpreter's packages
            from pyspark.sql import SparkSession

            _session = (SparkSession.builder.master("local[2]").appName("omnijourney-analytics")
                        .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
                        .config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "2g")
                        .getOrCreate())
        return _session


def tables_on(spark: Any) -> Tables:
    """:class:`Tables` on a Spark session that has the views ``events`` and ``people`` (the store's shape)."""
    import ibis

    return Tables("spark", ibis.pyspark.connect(spark))


@contextmanager
def spark_tables(store: Store) -> Iterator[Tables]:
    """The store's tables copied into the Spark session (tests; a one-machine trial of Spark)."""
    spark = session()
    with store.cursor() as cur:
        events = cur.execute("SELECT * EXCLUDE (properties), CAST(properties AS VARCHAR) AS properties_json "
                             "FROM events").df()
        people = cur.execute("SELECT * FROM people").df()
    spark.createDataFrame(events).createOrReplaceTempView("events_raw")
    spark.sql("SELECT id, type, event, name, customer_id, anonymous_id, user_id, channel, store_code, ts, "
              "received_at, from_json(properties_json, 'map<string,string>') AS properties FROM events_raw"
              ).createOrReplaceTempView("events")
    people_df = people
    if people_df.empty:
        spark.sql("SELECT CAST(NULL AS STRING) AS merged_id, CAST(NULL AS STRING) AS survivor_id WHERE 1 = 0") \
            .createOrReplaceTempView("people")
    else:
        spark.createDataFrame(people_df).createOrReplaceTempView("people")
    yield tables_on(spark)
