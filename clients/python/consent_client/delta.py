"""Writing Delta tables that the consent service can erase people from (extra `[delta]`:
`deltalake` and `pyarrow`, no JVM).

A Delta table records, for every data file, the minimum and maximum of its columns in the
transaction log, and Parquet keeps the same in each file's footer: on an id column both
would name people, in log entries that outlive the rows. `write_delta` writes (or appends
to) a table that keeps no statistics for the id column, anywhere; the other columns keep
theirs, so data skipping on them still works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATS_COLUMNS = "delta.dataSkippingStatsColumns"
NUM_INDEXED = "delta.dataSkippingNumIndexedCols"


def _quoted(column: str) -> str:
    plain = column.replace("_", "").isalnum()
    return column if plain else "`" + column.replace("`", "``") + "`"


def _stats_settings(columns: Sequence[str], id_column: str) -> dict[str, str]:
    """Table properties that collect statistics for every column but the id."""
    others = [_quoted(c) for c in columns if c != id_column]
    if not others:
        return {NUM_INDEXED: "0"}
    return {STATS_COLUMNS: ",".join(others)}


def write_delta(
    table_uri: str,
    data: Any,
    *,
    id_column: str,
    mode: str = "append",
    partition_by: list[str] | None = None,
    storage_options: Mapping[str, str] | None = None,
    configuration: Mapping[str, str] | None = None,
) -> None:
    """Writes `data` (a pyarrow Table, or anything `deltalake.write_deltalake` takes) to the
    Delta table at `table_uri`, creating it if absent, without statistics for `id_column`.

    `mode` is `append` (default), `overwrite`, `error` or `ignore`. A table created by other
    means is switched to the same setting (one metadata commit) before the first append.
    """
    import deltalake
    import pyarrow as pa
    from deltalake.exceptions import TableNotFoundError

    table = data if isinstance(data, pa.Table) else pa.table(data)
    if id_column not in table.column_names:
        raise ValueError(f"{id_column!r} is not a column of the data.")
    if id_column in (partition_by or []):
        raise ValueError("The id column cannot be a partition column: its values would be paths.")
    options = dict(storage_options) if storage_options else None
    try:
        existing = deltalake.DeltaTable(table_uri, storage_options=options)
    except TableNotFoundError:
        existing = None
    if existing is not None:
        names = [f.name for f in existing.schema().fields]
        wanted = _stats_settings(names, id_column)
        current = existing.metadata().configuration
        if any(current.get(k) != v for k, v in wanted.items()):
            existing.alter.set_table_properties(wanted)
    writer = deltalake.WriterProperties(
        column_properties={id_column: deltalake.ColumnProperties(statistics_enabled="NONE")}
    )
    deltalake.write_deltalake(
        table_uri,
        table,
        mode=mode,  # type: ignore[arg-type,call-overload]
        partition_by=partition_by,
        storage_options=options,
        configuration={**_stats_settings(table.column_names, id_column), **(configuration or {})},
        writer_properties=writer,
    )
