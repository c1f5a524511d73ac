"""The committed .env.example lists every setting, as the settings classes define it."""

from __future__ import annotations

from pathlib import Path

from config.envdoc import SETTINGS_CLASSES, _default, _load, collect, env_example, markdown

ROOT = Path(__file__).resolve().parents[3]


def test_env_example_is_generated_from_the_settings():
    assert (ROOT / ".env.example").read_text() == env_example(), "run: python -m config.envdoc --write"


def test_every_setting_is_described():
    assert [var for _, var, _, description in collect() if not description] == []


def test_a_variable_defined_by_several_processes_has_one_default():
    # The runner (infra.settings.StackSettings) and a process may both read e.g.
    # PIPELINE_FLOW_METRICS_PORT; they must agree on its default.
    defaults: dict[str, set[str]] = {}
    for _, path in SETTINGS_CLASSES:
        for name, info in _load(path).model_fields.items():
            defaults.setdefault(f"PIPELINE_{name.upper()}", set()).add(_default(info))
    assert {var: values for var, values in defaults.items() if len(values) > 1} == {}


def test_the_readme_configuration_table_is_generated_from_the_settings():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    assert start in readme and end in readme, "README.md needs the configuration table markers"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table.strip() == markdown().strip(), "run: python -m config.envdoc --write"
