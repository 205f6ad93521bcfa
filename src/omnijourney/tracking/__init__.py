"""Event ingestion (Segment HTTP Tracking API) and the one timeline every domain writes to."""
