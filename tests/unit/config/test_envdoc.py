"""The committed .env.example lists every setting, as the settings classes define it."""

from __future__ import annotations

from pathlib import Path

from config.envdoc import collect, env_example

ROOT = Path(__file__).resolve().parents[3]


def test_env_example_is_generated_from_the_settings():
    assert (ROOT / ".env.example").read_text() == env_example(), "run: python -m config.envdoc > .env.example"


def test_every_setting_is_described():
    assert [var for _, var, _, description in collect() if not description] == []
