"""Durable sample store on SQLAlchemy 2: embedded SQLite (WAL) by default, PostgreSQL by URL.

Rows are committed before :meth:`SampleStore.add` returns, so a caller may acknowledge them.
Each (domain, bucket, split) keeps at most ``per_bucket_cap`` rows, oldest evicted first. The
store keeps each bucket's size in memory (read once per domain, then counted as rows go in), so
an insert does not re-count the buckets it touched; the eviction itself always asks the table.
A second process writing the same store is not counted here: its rows are trimmed by its own
store, or here once this store next reloads the domain (after a flush or restart).
The schema carries a version row; opening a store with a newer version than this code knows
is refused.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import OperationalError

from slocast.errors import ConfigError, SlocastError

__all__ = [
    "SCHEMA_VERSION",
    "SampleStore",
    "StoredCounts",
    "masked_url",
    "sqlite_url",
    "unreachable",
]

SCHEMA_VERSION = 1
_metadata = MetaData()
samples = Table(
    "slocast_samples",
    _metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("domain", String(64), nullable=False, index=True),
    Column("bucket", String(128), nullable=False),
    Column("heldout", Boolean, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", JSON, nullable=False),
    # Retention trims and split reads walk (domain, split, bucket) newest first.
    Index("ix_slocast_samples_bucket", "domain", "heldout", "bucket", "id"),
)
schema_version = Table(
    "slocast_schema_version", _metadata, Column("version", Integer, nullable=False)
)


def sqlite_url(home: Path) -> str:
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'samples.db'}"


@dataclass(frozen=True)
class StoredCounts:
    train: int
    test: int


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not just a crash
    cursor.close()


def masked_url(url: str | URL) -> str:
    """A database URL with its password masked, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def unreachable(what: str, url: str | URL, exc: OperationalError, field: str) -> SlocastError:
    """One line for a database that cannot be reached: what it is, where (password masked)
    and the driver's reason, naming the setting that points at it."""
    return SlocastError(f"{what} {masked_url(url)} unreachable: {exc.orig}", field=field)


class SampleStore:
    def __init__(self, url: str, per_bucket_cap: int = 5000, test_cap: int = 20_000) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        self.per_bucket_cap = per_bucket_cap
        self.test_cap = test_cap
        self.engine: Engine = create_engine(
            url,
            pool_pre_ping=True,
            json_serializer=lambda value: orjson.dumps(value).decode(),
            json_deserializer=orjson.loads,
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._migrate()
        except OperationalError as exc:
            # At start-up there is nothing to serve yet: say so in one line, not a traceback.
            raise unreachable("sample store", self.engine.url, exc, "store_url") from exc
        self._lock = threading.Lock()
        self._sizes: dict[str, Counter[tuple[str, bool]]] = {}

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return masked_url(self.engine.url)

    def _migrate(self) -> None:
        _metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            found = conn.execute(select(schema_version.c.version)).scalar()
            if found is None:
                conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))
            elif found > SCHEMA_VERSION:
                raise ConfigError(
                    f"store schema v{found} is newer than this slocast (v{SCHEMA_VERSION})",
                    field="store_url",
                )

    def add(
        self,
        domain: str,
        rows: Sequence[Mapping[str, Any]],
        buckets: Sequence[str],
        heldout: Sequence[bool],
    ) -> int:
        """Insert rows in one transaction (committed on return); trim full buckets."""
        if not rows:
            return 0
        added = Counter(zip(buckets, heldout, strict=True))
        with self._lock:
            with self.engine.begin() as conn:
                sizes = self._bucket_sizes(conn, domain) + added
                self._insert(conn, domain, rows, buckets, heldout)
                for bucket, held in added:
                    cap = self.test_cap if held else self.per_bucket_cap
                    if sizes[bucket, held] > cap:
                        self._trim(conn, domain, bucket, held, cap)
                        sizes[bucket, held] = cap
            # Only once committed: a rolled-back batch is not counted.
            self._sizes[domain] = sizes
        return len(rows)

    def _insert(
        self,
        conn: Connection,
        domain: str,
        rows: Sequence[Mapping[str, Any]],
        buckets: Sequence[str],
        heldout: Sequence[bool],
    ) -> None:
        now = time.time()
        if self.engine.dialect.name == "sqlite":
            # SQLite stores JSON as text: serialized here, the rows go to the driver as plain
            # tuples, without SQLAlchemy's per-row parameter processing (a third of ingest).
            conn.exec_driver_sql(
                f"INSERT INTO {samples.name} (domain, bucket, heldout, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (domain, b, h, now, orjson.dumps(dict(r)).decode())
                    for r, b, h in zip(rows, buckets, heldout, strict=True)
                ],
            )
            return
        values = [
            {"domain": domain, "bucket": b, "heldout": h, "received_at": now, "payload": dict(r)}
            for r, b, h in zip(rows, buckets, heldout, strict=True)
        ]
        conn.execute(insert(samples), values)

    @staticmethod
    def _trim(conn: Connection, domain: str, bucket: str, held: bool, cap: int) -> None:
        """Delete the bucket's rows beyond its newest ``cap`` (counted in the table)."""
        oldest = (
            select(samples.c.id)
            .where(
                samples.c.domain == domain, samples.c.heldout == held, samples.c.bucket == bucket
            )
            .order_by(samples.c.id.desc())
            .offset(cap)
            .scalar_subquery()
        )
        conn.execute(delete(samples).where(samples.c.id.in_(oldest)))

    def _bucket_sizes(self, conn: Connection, domain: str) -> Counter[tuple[str, bool]]:
        sizes = self._sizes.get(domain)
        if sizes is None:
            result = conn.execute(
                select(samples.c.bucket, samples.c.heldout, func.count())
                .where(samples.c.domain == domain)
                .group_by(samples.c.bucket, samples.c.heldout)
            )
            sizes = Counter({(str(b), bool(h)): int(n) for b, h, n in result})
        return sizes

    def rows(self, domain: str, heldout: bool, up_to_id: int | None = None) -> list[dict[str, Any]]:
        """Stored rows of one split, oldest first (those with ids up to ``up_to_id``, given
        one), with their id as ``_id`` and the time their ingest call stored them as
        ``_received_at`` (the same for every row of one call)."""
        query = select(samples.c.id, samples.c.received_at, samples.c.payload).where(
            samples.c.domain == domain, samples.c.heldout == heldout
        )
        if up_to_id is not None:
            query = query.where(samples.c.id <= up_to_id)
        with self.engine.connect() as conn:
            result = conn.execute(query.order_by(samples.c.id))
            return [
                {**(p if isinstance(p, dict) else orjson.loads(p)), "_id": i, "_received_at": t}
                for i, t, p in result
            ]

    def counts(self, domain: str) -> StoredCounts:
        with self.engine.connect() as conn:
            result = conn.execute(
                select(samples.c.heldout, func.count())
                .where(samples.c.domain == domain)
                .group_by(samples.c.heldout)
            )
            by_split = {bool(h): int(n) for h, n in result}
        return StoredCounts(train=by_split.get(False, 0), test=by_split.get(True, 0))

    def bucket_counts(self, domain: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            result = conn.execute(
                select(samples.c.bucket, func.count())
                .where(samples.c.domain == domain, samples.c.heldout.is_(False))
                .group_by(samples.c.bucket)
            )
            return {str(b): int(n) for b, n in result}

    def latest_id(self, domain: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(samples.c.id)).where(samples.c.domain == domain)
            ).scalar()
        return int(value or 0)

    def flush(self, domain: str, train: bool = True, test: bool = True) -> StoredCounts:
        """Delete rows of the chosen splits; returns how many of each were removed."""
        before = self.counts(domain)
        with self._lock, self.engine.begin() as conn:
            self._sizes.pop(domain, None)
            for held, wanted in ((False, train), (True, test)):
                if wanted:
                    conn.execute(
                        delete(samples).where(samples.c.domain == domain, samples.c.heldout == held)
                    )
        return StoredCounts(before.train if train else 0, before.test if test else 0)

    def ping(self) -> None:
        """A round trip to the database; raises SQLAlchemy's OperationalError when it is down."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        self.engine.dispose()
