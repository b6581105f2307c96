"""Issue 8: a corpus of awkward source values, each a small Postgres table, through one real run.

Every case states its outcome up front: converted (to an exact SQLite value), or rejected with a named
reason that the reject file carries with table, key and column. The run is the real pipeline with auto
schema on a real PostgreSQL database, so the corpus also proves that no value crashes a stage and
that no row goes missing: per table, source rows = loaded + rejected, and the target holds exactly
the loaded ones. A few inputs are configuration mistakes rather than data; they must stop the run
with a clear error before any row moves.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.runner import RunOutcome, run
from tests.support.postgres import throwaway_database

DEEP = "[" * 2000 + "1" + "]" * 2000
ALL_BYTES = bytes(range(256))


@dataclass(frozen=True)
class Case:
    """One source table `bad_<name>(id int primary key, v <pg_type>)` and what each row becomes.

    expect maps id -> the SQLite value, or ("reject", reason fragment).
    """

    name: str
    pg_type: str
    rows: dict[int, str]  # id -> SQL expression for v
    expect: dict[int, Any]


def R(fragment: str) -> tuple[str, str]:
    return ("reject", fragment)


CASES: list[Case] = [
    Case("float_nan", "double precision", {1: "'NaN'", 2: "1.5"}, {1: R("NaN"), 2: 1.5}),
    Case("float_inf", "double precision", {1: "'Infinity'", 2: "'-Infinity'"},
         {1: R("infinity policy is reject"), 2: R("infinity policy is reject")}),
    Case("real_values", "real", {1: "0.1", 2: "3.4028235e38"}, {1: 0.1, 2: 3.4028235e38}),
    Case("numeric_nan", "numeric", {1: "'NaN'", 2: "0"}, {1: R("NaN"), 2: "0"}),
    Case("numeric_huge", "numeric", {1: "1e200", 2: "-0.000000000000000000000000000001"},
         {1: "1" + "0" * 200, 2: "-0.000000000000000000000000000001"}),
    Case("numeric_scale", "numeric(10,2)", {1: "0.1", 2: "12345678.9"}, {1: "0.10", 2: "12345678.90"}),
    Case("money", "money", {1: "'-1234.56'::numeric::money", 2: "0"}, {1: "-1234.56", 2: "0.00"}),
    Case("date_bc", "date", {1: "'0044-03-15 BC'", 2: "'0001-01-01'"},
         {1: R("BC date cannot be represented"), 2: "0001-01-01"}),
    Case("date_far", "date", {1: "'12345-01-01'"}, {1: R("year beyond 9999")}),
    Case("date_infinity", "date", {1: "'infinity'", 2: "'-infinity'"},
         {1: R("infinity policy is reject"), 2: R("infinity policy is reject")}),
    Case("ts_infinity", "timestamp", {1: "'-infinity'", 2: "'2020-02-29 23:59:59'"},
         {1: R("infinity policy is reject"), 2: "2020-02-29 23:59:59"}),
    Case("tstz_far", "timestamptz", {1: "'10000-01-01 00:00:00+00'"}, {1: R("year beyond 9999")}),
    Case("tstz_bc", "timestamptz", {1: "'0001-06-01 00:00:00+00 BC'"}, {1: R("BC timestamp")}),
    Case("tstz_offset", "timestamptz", {1: "'2021-03-04 05:06:07.999999-08:30'"}, {1: "2021-03-04 13:36:07"}),
    Case("time_2400", "time", {1: "'24:00:00'", 2: "'00:00:00.000001'"}, {1: "24:00:00", 2: "00:00:00.000001"}),
    Case("timetz", "timetz", {1: "'12:00:00+05:30'"}, {1: "12:00:00+05:30"}),
    Case("interval", "interval", {1: "'-1 year 2 mons -3 days 04:05:06.5'"}, {1: "-10 mons -3 days +04:05:06.5"}),
    Case("json_nul", "json", {1: """'{"a": "\\u0000", "b":[1, 2]}'"""}, {1: '{"a": "\\u0000", "b":[1, 2]}'}),
    Case("jsonb_deep", "jsonb", {1: f"'{DEEP}'"}, {1: DEEP}),
    Case("jsonb_unicode", "jsonb", {1: """'{"k": "日本 🎉 \\"q\\""}'"""}, {1: '{"k": "日本 🎉 \\"q\\""}'}),
    Case("text_odd", "text", {1: "E'tab\\there\\nnew line \\u00e9 🎉'", 2: "''"},
         {1: "tab\there\nnew line é 🎉", 2: ""}),
    Case("char_pad", "char(5)", {1: "'ab'"}, {1: "ab   "}),
    Case("array_bounds", "integer[]", {1: "'[0:1]={1,2}'", 2: "'{{1,NULL},{3,4}}'", 3: "'{}'"},
         {1: "[1,2]", 2: "[[1,null],[3,4]]", 3: "[]"}),
    Case("array_float_nan", "float8[]", {1: "'{NaN,1}'", 2: "'{1.5,NULL}'"}, {1: R("NaN"), 2: "[1.5,null]"}),
    Case("array_text_quotes", "text[]", {1: """'{"a,b","NULL",NULL,"x\\"y"}'"""}, {1: '["a,b","NULL",null,"x\\"y"]'}),
    Case("bytea_bytes", "bytea", {1: "'\\x" + ALL_BYTES.hex() + "'::bytea", 2: "''::bytea"},
         {1: ALL_BYTES, 2: b""}),
    Case("uuid", "uuid", {1: "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"}, {1: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}),
    Case("boolean", "boolean", {1: "true", 2: "false"}, {1: 1, 2: 0}),
    Case("enum_quote", "public.mood", {1: "'it''s ok'", 2: "'sad'"}, {1: "it's ok", 2: "sad"}),
    Case("domain_int", "public.posint", {1: "7"}, {1: 7}),
    Case("composite", "public.pair", {1: "ROW(1, 'x y')::public.pair"}, {1: '(1,"x y")'}),
    Case("range", "int4range", {1: "'[1,5]'", 2: "'empty'"}, {1: "[1,6)", 2: "empty"}),
    Case("tsvector", "tsvector", {1: "'a fat cat'"}, {1: "'a' 'cat' 'fat'"}),
    Case("inet", "inet", {1: "'192.168.0.1/32'", 2: "'::1/128'"}, {1: "192.168.0.1", 2: "::1"}),
    Case("unknown_regconfig", "regconfig", {1: "'english'"}, {1: "english"}),
]

SETUP = """
CREATE TYPE public.mood AS ENUM ('sad', 'it''s ok');
CREATE DOMAIN public.posint AS integer CHECK (VALUE > 0);
CREATE TYPE public.pair AS (n integer, s text);
-- two timestamps distinct in Postgres that the default format (whole seconds) makes equal
CREATE TABLE public.bad_ts_unique (id int PRIMARY KEY, v timestamptz UNIQUE);
INSERT INTO public.bad_ts_unique VALUES (1, '2020-01-01 00:00:00.1+00'), (2, '2020-01-01 00:00:00.2+00');
-- a child whose parent row is rejected (NaN) is rejected with the parent's reason
CREATE TABLE public.bad_parent (id int PRIMARY KEY, score double precision);
INSERT INTO public.bad_parent VALUES (1, 'NaN'), (2, 1);
CREATE TABLE public.bad_child (id int PRIMARY KEY, parent_id int REFERENCES public.bad_parent(id));
INSERT INTO public.bad_child VALUES (1, 1), (2, 2), (3, NULL);
-- no primary key, duplicate rows, a generated column
CREATE TABLE public.bad_nokey (v text, twice int GENERATED ALWAYS AS (length(v) * 2) STORED);
INSERT INTO public.bad_nokey (v) VALUES ('same'), ('same'), (NULL);
"""


@pytest.fixture(scope="module")
def corpus_run(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunOutcome, Path]]:
    """One database and one run for the whole corpus; the root folder holds config.yaml (with the DSN)."""
    with throwaway_database(pg_admin_dsn, prefix="smbad") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SETUP)
            for case in CASES:
                conn.execute(f"CREATE TABLE public.bad_{case.name} (id int PRIMARY KEY, v {case.pg_type})")
                for i, expr in case.rows.items():
                    conn.execute(f"INSERT INTO public.bad_{case.name} VALUES ({i}, {expr})")
        root = tmp_path_factory.mktemp("bad")
        (root / "migrations").mkdir()
        (root / "config.yaml").write_text(
            f"source:\n  uri: {dsn}\ntarget:\n  path: out.db\n  migrations: migrations\n"
            "auto_schema:\n  enabled: true\n"
            # the defaults, written down: a default that rejects rows is not a decision (findings gate)
            "types:\n  nan: reject\n  infinity: reject\n  out_of_range: reject\n"
            "tables:\n  bad_child:\n    orphans: reject\n")
        outcome = run(root / "config.yaml", runs_dir=str(root / "runs"))
        assert outcome.status == "succeeded", outcome.report["error"]
        yield outcome, root


def _rejects(run_dir: Path, table: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in sorted((run_dir / "rejects" / table).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out[rec["key"]] = rec
    return out


def _rows(db: Path, table: str) -> dict[Any, Any]:
    with closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute(f'SELECT id, v FROM "{table}"'))


def test_corpus_has_enough_cases() -> None:
    assert len(CASES) + 4 >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_outcome(corpus_run: tuple[RunOutcome, Path], case: Case) -> None:
    outcome, root = corpus_run
    table = f"bad_{case.name}"
    rows = _rows(root / "out.db", table)
    rejects = _rejects(outcome.run_dir, table)
    totals = next(t for t in outcome.report["tables"] if t["name"] == table)
    assert totals["source_rows"] == len(case.rows) == totals["loaded"] + totals["rejected"] + totals["filtered"]
    assert totals["loaded"] == len(rows) and totals["rejected"] == len(rejects)
    for i, want in case.expect.items():
        if isinstance(want, tuple) and want[0] == "reject":
            assert i not in rows
            rec = rejects[str(i)]
            assert rec["table"] == table and rec["column"] == "v" and want[1] in rec["reason"], rec
        else:
            assert str(i) not in rejects, rejects.get(str(i))
            got = rows[i]
            assert got == want and type(got) is type(want), (got, want)


def test_lost_precision_and_timestamps_collide_into_a_named_duplicate(corpus_run: tuple[RunOutcome, Path]) -> None:
    outcome, root = corpus_run
    assert _rows(root / "out.db", "bad_ts_unique") == {1: "2020-01-01 00:00:00"}
    rec = _rejects(outcome.run_dir, "bad_ts_unique")["2"]
    assert rec["code"] == "duplicate" and "already used by row 1" in rec["reason"]


def test_child_of_rejected_parent_is_rejected_with_the_parents_reason(corpus_run: tuple[RunOutcome, Path]) -> None:
    outcome, root = corpus_run
    with closing(sqlite3.connect(root / "out.db")) as conn:
        assert dict(conn.execute("SELECT id, parent_id FROM bad_child")) == {2: 2, 3: None}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    rec = _rejects(outcome.run_dir, "bad_child")["1"]
    assert rec["code"] == "parent_rejected" and "NaN" in rec["reason"]


def test_keyless_duplicates_all_arrive_and_generated_columns_stay_out(corpus_run: tuple[RunOutcome, Path]) -> None:
    _outcome, root = corpus_run
    with closing(sqlite3.connect(root / "out.db")) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(bad_nokey)")] == ["v"]
        values = sorted(conn.execute("SELECT coalesce(v, '<null>') FROM bad_nokey"))
        assert values == [("<null>",), ("same",), ("same",)]
    text = next((root / "migrations").glob("*_auto_bad_nokey.sql")).read_text()
    assert "left out: column twice is generated" in text


def test_every_table_balances_and_the_checks_pass(corpus_run: tuple[RunOutcome, Path]) -> None:
    outcome, _root = corpus_run
    assert len(outcome.report["tables"]) == len(CASES) + 4
    for t in outcome.report["tables"]:
        assert t["equation_ok"], t
    assert all(c["ok"] for c in outcome.report["checks"])


def test_a_configuration_mistake_is_a_clear_error_before_any_row_moves(
    corpus_run: tuple[RunOutcome, Path], tmp_path: Path
) -> None:
    """A uuid column sent into a REAL column by a hand-written migration has no rule: the run stops."""
    _outcome, root = corpus_run
    dsn = (root / "config.yaml").read_text().split("uri: ", 1)[1].split("\n", 1)[0]
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "001_bad.sql").write_text("-- migrate:up\nCREATE TABLE bad_uuid (id INTEGER PRIMARY KEY, v REAL);\n"
                                     "CREATE TABLE bad_boolean (id INTEGER PRIMARY KEY, w INTEGER);\n"
                                     "-- migrate:down\nDROP TABLE bad_uuid;\nDROP TABLE bad_boolean;\n")
    (tmp_path / "config.yaml").write_text(
        f"source:\n  uri: {dsn}\ntarget:\n  path: out.db\n  migrations: migrations\n")
    failed = run(tmp_path / "config.yaml", runs_dir=str(tmp_path / "runs"))
    assert failed.status == "failed" and failed.exit_code == 2
    err = failed.report["error"]
    assert "bad_uuid" in err and "uuid" in err and "REAL" in err
    assert "source column public.bad_boolean.v has no column in target bad_boolean" in err
    assert not (tmp_path / "out.db").exists()
    assert root.exists()
