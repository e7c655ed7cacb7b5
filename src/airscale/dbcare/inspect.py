"""Reading the metadata database's catalog for `advise` (I/O only, no decisions)."""

from __future__ import annotations

from airscale.dbcare.advise import TableStats


def index_columns(conn) -> dict[str, list[tuple[str, ...]]]:
    """table -> column lists of every index of the public schema (expressions as '?')."""
    sql = """
        SELECT t.relname, i.indexrelid,
               array_agg(coalesce(a.attname, '?') ORDER BY k.ord)
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE t.relkind = 'r'
        GROUP BY t.relname, i.indexrelid
    """
    out: dict[str, list[tuple[str, ...]]] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            out[table] = []
        cur.execute(sql)
        for table, _, cols in cur.fetchall():
            out.setdefault(table, []).append(tuple(cols))
    return out


def table_stats(conn) -> list[TableStats]:
    with conn.cursor() as cur:
        cur.execute("""
            SELECT relname, n_live_tup, n_dead_tup, pg_total_relation_size(relid),
                   greatest(last_vacuum, last_autovacuum)
            FROM pg_stat_user_tables WHERE schemaname = 'public'
        """)
        return [
            TableStats(r[0], int(r[1]), int(r[2]), int(r[3]), r[4].isoformat(timespec="seconds") if r[4] else None)
            for r in cur.fetchall()
        ]
