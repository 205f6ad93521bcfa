"""Small pieces every domain shares: ids, errors, time, column types."""
