"""README.md's settings table and the environment variables the service reads are the same set.

The table is what an operator configures from; a variable read but not listed is a knob nobody can
find, and one listed but never read is a promise the code does not keep (`STAGING_FETCH_ALLOW_PRIVATE`
was such a promise). Parsing the sources, rather than listing names here, keeps this test from
drifting the way the README did.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# The Django service's packages. The standalone emulator (`replicate_emulator/`) has its own
# command-line flags and `--help`; bench/ and tests/ are not the service.
SERVICE_PACKAGES = ("stagingsite", "models_config", "staging", "api")
ENV_READERS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "db", "db_url", "cache", "path"}
TABLE_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _first_str(args: list[ast.expr]) -> str | None:
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args[0].value
    return None


def env_reads(source: str) -> set[str]:
    """Names read by `env.<type>("NAME")`, `env("NAME")`, `os.environ.get`, `os.getenv` or `os.environ["NAME"]`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            reads = (
                _is_name(func, "env")
                or (isinstance(func, ast.Attribute) and func.attr in ENV_READERS and _is_name(func.value, "env"))
                or (isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value))
                or (isinstance(func, ast.Attribute) and func.attr == "getenv" and _is_name(func.value, "os"))
            )
            name = _first_str(node.args) if reads else None
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
            name = _first_str([node.slice])
        else:
            name = None
        if name:
            names.add(name)
    return names


def service_sources() -> list[Path]:
    files = []
    for package in SERVICE_PACKAGES:
        folder = ROOT / package
        if folder.is_dir():
            files += [path for path in folder.rglob("*.py") if "migrations" not in path.parts]
    return sorted(files)


def variables_read() -> dict[str, list[str]]:
    """Every environment variable the service reads -> the files that read it."""
    found: dict[str, list[str]] = {}
    for path in service_sources():
        for name in env_reads(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    found.pop("DJANGO_SETTINGS_MODULE", None)  # Django's own bootstrapping, set by manage.py / wsgi / asgi
    return found


def settings_table(readme: str) -> set[str]:
    """Names in the first column of the table under README.md's `## Settings` heading."""
    match = re.search(r"^## Settings\s*$(.*?)(?=^## )", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Settings' section"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    names: set[str] = set()
    for row in rows[2:]:  # after the header and the |---| line
        first_cell = row.strip("|").split("|", 1)[0]
        names.update(TABLE_NAME.findall(first_cell))
    return names


def test_the_parser_sees_every_kind_of_read():
    source = (
        'import os\nA = env.bool("A_FLAG", default=False)\nB = env("B_PLAIN")\nC = os.environ.get("C_OS", "")\n'
        'D = os.getenv("D_GETENV")\nE = os.environ["E_ITEM"]\nos.environ["F_WRITE"] = "1"\n'
        'G = env.list(\n  "G_LIST"\n)\n'
    )
    assert env_reads(source) == {"A_FLAG", "B_PLAIN", "C_OS", "D_GETENV", "E_ITEM", "G_LIST"}


def test_the_table_parser_reads_only_the_first_column():
    readme = (
        "## Settings\n\n| variable | meaning | default |\n|---|---|---|\n"
        "| `ONE`, `TWO` | see `NOT_A_SETTING` | `x` |\n| `THREE` | three | 3 |\n\n## Next\n| `LATER` | | |\n"
    )
    assert settings_table(readme) == {"ONE", "TWO", "THREE"}


def test_settings_and_setup_are_scanned():
    scanned = {str(path.relative_to(ROOT)) for path in service_sources()}
    assert "stagingsite/settings.py" in scanned
    assert {"DATABASE_URL", "STAGING_FETCH_ALLOW_PRIVATE", "LOG_LEVEL"} <= set(variables_read())


def test_readme_lists_every_variable_the_service_reads_and_no_other():
    read = variables_read()
    listed = settings_table((ROOT / "README.md").read_text(encoding="utf-8"))
    undocumented = {name: files for name, files in read.items() if name not in listed}
    unread = sorted(listed - set(read))
    assert not undocumented, f"read but missing from README.md's settings table: {undocumented}"
    assert not unread, f"listed in README.md's settings table but never read: {unread}"


@pytest.mark.parametrize(("value", "expected"), [(None, "False"), ("true", "True")])
def test_fetch_allow_private_comes_from_the_environment(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "STAGING_FETCH_ALLOW_PRIVATE"}
    env["DJANGO_SETTINGS_MODULE"] = "stagingsite.settings"
    if value is not None:
        env["STAGING_FETCH_ALLOW_PRIVATE"] = value
    code = "from django.conf import settings; print(settings.STAGING_FETCH_ALLOW_PRIVATE)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == expected
