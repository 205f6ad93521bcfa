"""Measure the journey: analytics written once as Ibis expressions, on an embedded DuckDB store (default) or
directly on the PostgreSQL application database. Importing this package is cheap (no Ibis): see its modules."""
