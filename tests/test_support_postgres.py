import psycopg


def test_throwaway_database_is_real_and_empty(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        n = conn.execute("select count(*) from pg_tables where schemaname='public'").fetchone()
        assert n == (0,)
        assert conn.execute("select current_database()").fetchone()[0].startswith("smtest_")
