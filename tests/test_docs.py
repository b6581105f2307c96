"""Docs that cannot drift: the README names every command and option, its demo code runs, and the
committed JSON Schema of config.yaml is the one the models generate."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import jsonschema
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import config_json_schema

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README text under `## title`, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README + "\n## end", re.MULTILINE | re.DOTALL)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))


def long_options(cmd: click.Command) -> list[str]:
    out = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            out += [o for o in p.opts + p.secondary_opts if o.startswith("--") and o != "--help"]
    return out


CLI_DOC = section("Command line")


def test_the_walk_finds_the_commands() -> None:
    paths = {" ".join(p) for p, _ in commands(main)}
    assert {"run", "dry-run", "resume", "init", "config check", "config schema", "schema up"} <= paths


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in commands(main)])
def test_every_command_is_in_the_command_line_section(path: str) -> None:
    words = path.split()
    pattern = r"^supamigrate\s+" + r"\b.*?\b".join(re.escape(w) for w in words) + r"\b"
    assert re.search(pattern, CLI_DOC, re.MULTILINE), f"`supamigrate {path}` is missing from README ## Command line"


@pytest.mark.parametrize(("path", "option"), [(" ".join(p), o) for p, c in [((), main), *commands(main)]
                                              for o in long_options(c)])
def test_every_option_is_in_the_command_line_section(path: str, option: str) -> None:
    if not path:
        assert re.search(rf"{re.escape(option)}\b", CLI_DOC), f"global option {option} is not documented"
        return
    lines = [ln for ln in CLI_DOC.splitlines() if re.match(rf"supamigrate\s+{re.escape(path.split()[0])}\b", ln)]
    sub = path.split()[1:]
    if sub:
        lines = [ln for ln in lines if re.search(rf"\b{re.escape(sub[0])}\b", ln)]
    assert any(re.search(rf"{re.escape(option)}(?![\w-])", ln) for ln in lines), \
        f"`supamigrate {path} {option}` is missing from README ## Command line"


def test_every_exit_code_is_documented() -> None:
    for code, meaning in (("0", "success"), ("1", "blocking finding"), ("2", "config error"),
                          ("3", "unreachable"), ("130", "interrupted")):
        assert re.search(rf"`{code}` [^`]*{meaning}", CLI_DOC), code


@pytest.fixture
def demo_checkout(tmp_path: Path) -> Iterator[Path]:
    """The README's "from the repository root", in a scratch folder so runs/ lands there."""
    if not (ROOT / "examples" / "xrozen-demo.sql").exists():
        pytest.skip("examples/xrozen-demo.sql is not generated yet")
    for name in ("examples", "target_schema"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def test_the_python_api_example_runs_the_demo(demo_checkout: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", section("Python API"), re.DOTALL)
    assert blocks, "README ## Python API has no python example"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), namespace)  # the README's own code
    outcome = namespace["outcome"]
    assert getattr(outcome, "status") == "succeeded" and getattr(outcome, "exit_code") == 0  # noqa: B009
    assert getattr(outcome, "target").is_file()  # noqa: B009
    assert getattr(outcome, "run_dir").parent == demo_checkout / "runs"  # noqa: B009


def test_the_committed_json_schema_is_the_generated_one() -> None:
    committed = json.loads((ROOT / "config.schema.json").read_text(encoding="utf-8"))
    assert committed == config_json_schema(), (
        "config.schema.json is stale: regenerate it with `supamigrate config schema > config.schema.json`")


def test_the_shipped_config_validates_against_the_schema_and_points_at_it() -> None:
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert "# yaml-language-server: $schema=./config.schema.json" in text
    jsonschema.validate(yaml.safe_load(text), json.loads((ROOT / "config.schema.json").read_text()))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"source": {"uri": "x.sql"}, "run": {"batch_rowz": 1}},
                            json.loads((ROOT / "config.schema.json").read_text()))
