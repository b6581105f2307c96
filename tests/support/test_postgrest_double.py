"""The PostgREST/GoTrue double answers the way the protocol documents, over the real fixture database.

The REST source's tests are only as good as this double, so its protocol behaviour is pinned here
with plain httpx requests: headers, caps, counts, error bodies and faults.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import httpx
import psycopg
import pytest

from tests.support.postgrest_double import (
    TEST_PUBLISHABLE_KEY,
    TEST_SECRET_KEY,
    DoubleConfig,
    PostgrestDouble,
    mint_key,
)
from tests.support.xrozen import PAYMENT_AMOUNTS, XrozenFixture, load_xrozen_fixture

SERVICE = mint_key("service_role")


def _h(key: str = SERVICE, **extra: str) -> dict[str, str]:
    return {"apikey": key, "Authorization": f"Bearer {key}", **extra}


@pytest.fixture(scope="module")
def fixture_db(pg_admin_dsn: str) -> Iterator[XrozenFixture]:
    from tests.support.postgres import throwaway_database

    with throwaway_database(pg_admin_dsn) as dsn:
        yield load_xrozen_fixture(dsn, messages=1500)


@pytest.fixture
def double(fixture_db: XrozenFixture) -> Iterator[PostgrestDouble]:
    with PostgrestDouble(fixture_db.dsn) as d:
        yield d


def test_listens_on_loopback_only(double: PostgrestDouble) -> None:
    assert double.url.startswith("http://127.0.0.1:")


def test_openapi_root_describes_formats_enums_and_keys(double: PostgrestDouble) -> None:
    spec = httpx.get(double.url + "/rest/v1/", headers=_h()).json()
    payments = spec["definitions"]["payments"]["properties"]
    assert payments["id"]["format"] == "uuid"
    assert "This is a Primary Key.<pk/>" in payments["id"]["description"]
    assert payments["amount"] == {"format": "numeric", "type": "number"}
    assert payments["status"]["enum"] == ["pending", "paid", "overdue"]
    assert payments["status"]["format"] == "public.payment_status"
    assert payments["created_at"]["format"] == "timestamp with time zone"
    assert "project_overview" in spec["definitions"]  # a view is described ...
    assert "post" not in spec["paths"]["/project_overview"]  # ... but cannot be written
    assert "post" in spec["paths"]["/payments"]


def test_rows_keep_exact_numbers_and_iso_timestamps(double: PostgrestDouble) -> None:
    r = httpx.get(double.url + "/rest/v1/payments", params={"select": "*", "order": "id.asc"}, headers=_h())
    rows = json.loads(r.content, parse_float=Decimal)
    assert {row["id"]: format(row["amount"], "f") for row in rows} == PAYMENT_AMOUNTS
    assert "T" in rows[0]["created_at"]
    assert b'"amount":0.10' in r.content


def test_max_rows_cap_range_and_content_range(double: PostgrestDouble) -> None:
    url = double.url + "/rest/v1/messages"
    r = httpx.get(url, params={"select": "id", "order": "id", "limit": "5000"},
                  headers=_h(Prefer="count=exact"))
    assert len(r.json()) == 1000  # silently capped
    assert r.headers["content-range"] == "0-999/1500"
    r = httpx.get(url, params={"select": "id", "order": "id"}, headers=_h(Range="10-19", **{"Range-Unit": "items"}))
    assert len(r.json()) == 10 and r.headers["content-range"] == "10-19/*"
    r = httpx.get(url, params={"select": "id", "order": "id", "offset": "1500"}, headers=_h())
    assert r.status_code == 200 and r.json() == [] and r.headers["content-range"] == "*/*"
    r = httpx.get(url, params={"select": "id", "order": "id", "offset": "1600"}, headers=_h())
    assert r.status_code == 416 and r.json()["code"] == "PGRST103"
    r = httpx.get(url, params={"select": "id", "limit": "0"}, headers=_h(Prefer="count=planned"))
    assert r.headers["content-range"].startswith("*/") and int(r.headers["content-range"][2:]) > 0


def test_filters(double: PostgrestDouble, fixture_db: XrozenFixture) -> None:
    url = double.url + "/rest/v1/payments"
    ids = sorted(PAYMENT_AMOUNTS)

    def got(**params: str) -> list[str]:
        return [r["id"] for r in httpx.get(url, params={"select": "id", "order": "id", **params}, headers=_h()).json()]

    assert got(id=f"gt.{ids[2]}") == ids[3:]
    assert got(id=f"gte.{ids[2]}") == ids[2:]
    assert got(id=f"lt.{ids[2]}") == ids[:2]
    assert got(id=f"eq.{ids[1]}") == [ids[1]]
    assert got(id=f"in.({ids[0]},{ids[4]})") == [ids[0], ids[4]]
    assert got(amount="eq.0.10") == [i for i, a in PAYMENT_AMOUNTS.items() if a == "0.10"]
    assert got(**{"or": f"(id.lt.{ids[1]},and(id.eq.{ids[3]},amount.gt.0))"}) == [ids[0], ids[3]]


def test_keys_roles_and_gotrue_paging(double: PostgrestDouble, fixture_db: XrozenFixture) -> None:
    anon = mint_key("anon")
    r = httpx.get(double.url + "/rest/v1/payments", headers=_h(anon))
    assert r.status_code == 401 and r.json()["code"] == "42501"
    assert httpx.get(double.url + "/rest/v1/payments", headers=_h(TEST_SECRET_KEY)).status_code == 200
    assert httpx.get(double.url + "/rest/v1/payments", headers=_h(TEST_PUBLISHABLE_KEY)).status_code == 401
    bad = mint_key("service_role", "another-projects-secret-0123456789abcdef")
    assert httpx.get(double.url + "/rest/v1/payments", headers=_h(bad)).status_code == 401
    assert httpx.get(double.url + "/auth/v1/admin/users", headers=_h(anon)).status_code == 403
    r = httpx.get(double.url + "/auth/v1/admin/users", params={"page": "2", "per_page": "20"}, headers=_h())
    total = fixture_db.row_counts["auth.users"]
    assert r.headers["x-total-count"] == str(total)
    assert 'rel="next"' in r.headers["link"] and f"page={-(-total // 20)}" in r.headers["link"]
    assert len(r.json()["users"]) == 20
    with psycopg.connect(fixture_db.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM auth.users").fetchone()
    assert row is not None and row[0] == total


def test_faults_rate_limit_and_dropped_connections(fixture_db: XrozenFixture) -> None:
    with PostgrestDouble(fixture_db.dsn, DoubleConfig(rate_limit=2, rate_window=5.0, drop_every=2)) as d:
        url = d.url + "/rest/v1/payments"
        assert httpx.get(url, headers=_h()).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url, headers=_h())  # the second data request is cut mid-body
        r = httpx.get(url, headers=_h())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert d.stats.throttled == 1 and d.stats.dropped == 1
