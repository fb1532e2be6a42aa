"""docs/configuration.md's table of variables against service.settings.Settings: every variable, and its default."""

import re
from pathlib import Path

import pytest

from service.settings import Settings

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"


def table_rows() -> dict[str, str]:
    """{field name: the default cell} for each `RELIGHT_*` row of the table under "## Variables"."""
    section = CONFIGURATION.read_text().split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`RELIGHT_"):
            continue
        names = re.findall(r"`RELIGHT_(\w+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")] if len(names) > 1 else [cells[1]]
        for name, default in zip(names, defaults, strict=True):
            rows[name.lower()] = default
    return rows


def test_every_setting_is_in_the_table_and_every_row_is_a_setting():
    assert set(table_rows()) == set(Settings.model_fields)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_the_table_gives_each_settings_default(name):
    cell, default = table_rows()[name], Settings.model_fields[name].default
    if default is None or default == "":
        assert not re.search(r"\d", cell), f"{name}: the table says {cell!r}, the default is unset"
    elif isinstance(default, bool):
        assert cell == str(default).lower()
    elif isinstance(default, int | float):
        assert float(cell) == default
    elif isinstance(default, Path):
        assert cell.strip("`") == str(default.relative_to(ROOT))
    else:
        assert cell.strip("`") == default
