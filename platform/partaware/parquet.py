"""Parquet bytes in and out, the one way the platform reads and writes small tables.

Reads use ``use_threads=False``: Arrow's CPU thread pool, once used by ``read_table``, can abort the
interpreter at exit ("terminate called without an active exception", apache/arrow#34314, #33975),
which would turn a successful command into exit code 134. Manifests, results and feature shards are
read shard by shard, so one thread costs nothing measurable here.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq


def table_to_parquet_bytes(table: pa.Table, *, compression: str = "zstd") -> bytes:
    """Deterministic Parquet bytes (no statistics, fixed compression): same rows, same bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, write_statistics=False)
    return sink.getvalue().to_pybytes()


def parquet_bytes_to_table(data: bytes, *, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(pa.BufferReader(data), columns=columns, use_threads=False)
