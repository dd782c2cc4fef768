"""Durable sample store (SQLite WAL embedded, PostgreSQL by URL) and retention buckets."""

from slocast.store.buckets import bucket_of, is_heldout, llm_bucket
from slocast.store.sql import SCHEMA_VERSION, SampleStore, StoredCounts, sqlite_url

__all__ = [
    "SCHEMA_VERSION",
    "SampleStore",
    "StoredCounts",
    "bucket_of",
    "is_heldout",
    "llm_bucket",
    "sqlite_url",
]
