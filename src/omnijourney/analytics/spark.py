"""Apache Spark as an analytics backend (the optional extra ``omnijourney[spark]``): the same Ibis expressions on
PySpark, for users who outgrow one machine.

:func:`spark_tables` exports the DuckDB store's tables (``events``, ``people``) to Parquet, reads them into a Spark
session as temporary views and answers :class:`~omnijourney.analytics.tables.Tables` on them. Parquet keeps every
column's type and its NULLs as they are (through pandas, a missing text became the string ``'NaN'`` on Spark, so
identify calls counted as touchpoints) and is what a lake would hold. ``properties`` becomes a Spark
``map<string,string>`` (Ibis' JSON functions on PySpark go through Python UDFs that do not read Spark's JSON); the
analyses' property accessors read a map value as the property's text. A real deployment writes the events to Parquet
or a table of its lake from the same feed, and points :func:`tables_on` at that session.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omnijourney.analytics.store import Store
from omnijourney.analytics.tables import Tables

_session: Any = None
_lock = threading.Lock()

# a local session on one machine: two cores, UTC, no UI, no progress bars
LOCAL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
}

# a few thousand rows (the tests): planning, code generation and task scheduling cost more than the work, so one
# partition per shuffle, no adaptive re-planning, expressions interpreted rather than compiled to Java, and the JVM's
# quick compiler only (the analytics tests on Spark: 6 min -> 2 min 45 s on this 2-core machine at a load of 8-9)
SMALL_DATA_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


def session(conf: Mapping[str, str] | None = None) -> Any:
    """The process's local Spark session, started on first use with :data:`LOCAL_CONF` and ``conf`` over it (the
    first caller's ``conf`` counts: a JVM's settings are fixed when it starts)."""
    global _session
    with _lock:
        if _session is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers with this interpreter's packages
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.master("local[2]").appName("omnijourney-analytics")
            for key, value in {**LOCAL_CONF, **(conf or {})}.items():
                builder = builder.config(key, value)
            _session = builder.getOrCreate()
            _session.sparkContext.setLogLevel("ERROR")
        return _session


def tables_on(spark: Any) -> Tables:
    """:class:`Tables` on a Spark session that has the views ``events`` and ``people`` (the store's shape)."""
    import ibis

    return Tables("spark", ibis.pyspark.connect(spark))


@contextmanager
def spark_tables(store: Store) -> Iterator[Tables]:
    """The store's tables as Parquet files read by the Spark session (tests; a one-machine trial of Spark). The
    files live as long as the context: Spark reads them lazily, at each query."""
    spark = session()
    with tempfile.TemporaryDirectory(prefix="omni-spark-") as tmp:
        events, people = Path(tmp, "events.parquet"), Path(tmp, "people.parquet")
        with store.cursor() as cur:
            # properties as JSON text: Spark's from_json makes the map (Parquet has no JSON type Spark reads)
            cur.execute(f"COPY (SELECT * EXCLUDE (properties), CAST(properties AS VARCHAR) AS properties_json "
                        f"FROM events) TO '{events}' (FORMAT parquet)")
            cur.execute(f"COPY people TO '{people}' (FORMAT parquet)")
        spark.read.parquet(str(events)).createOrReplaceTempView("events_raw")
        spark.sql("SELECT id, type, event, name, customer_id, anonymous_id, user_id, channel, store_code, ts, "
                  "received_at, from_json(properties_json, 'map<string,string>') AS properties, campaign "
                  "FROM events_raw").createOrReplaceTempView("events")
        spark.read.parquet(str(people)).createOrReplaceTempView("people")
        yield tables_on(spark)
