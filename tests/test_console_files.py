"""The console's files without a browser: both languages say everything, every string the code asks for exists, every
value the hub can send has a label, and the vendored library carries its licence."""

from __future__ import annotations

import json
import re

import pytest

from guardlink.models import AssignmentState, CommandKind, EscalationStatus, GuardState, IncidentKind, Severity
from hub.accounts import Role
from hub.console import CONSOLE_DIR

LANGUAGES = ["en", "zh-CN"]


def strings(language: str) -> dict[str, str]:
    return json.loads((CONSOLE_DIR / "i18n" / f"{language}.json").read_text())


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = strings("en"), strings("zh-CN")
    assert en.keys() == zh.keys()
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", zh[key])), key
        assert zh[key].strip(), key


def test_every_string_the_code_asks_for_is_translated() -> None:
    code = "\n".join(p.read_text() for p in (CONSOLE_DIR / "js").glob("*.js"))
    asked = set(re.findall(r'\bt\("([a-z_.]+)"', code))
    assert asked, "no t(...) calls found"
    for language in LANGUAGES:
        assert asked <= strings(language).keys(), (language, sorted(asked - strings(language).keys()))


@pytest.mark.parametrize("group,values", [
    ("kind", IncidentKind), ("status", EscalationStatus), ("severity", Severity), ("assignment", AssignmentState),
    ("guard_state", GuardState), ("command", CommandKind), ("role", Role),
])
def test_every_value_the_hub_sends_has_a_label(group: str, values: type) -> None:
    for language in LANGUAGES:
        missing = [v.value for v in values if f"{group}.{v.value}" not in strings(language)]
        assert not missing, (language, group, missing)


def test_the_page_loads_nothing_from_outside() -> None:
    for path in CONSOLE_DIR.rglob("*"):
        if path.suffix in (".html", ".css", ".js") and "vendor" not in path.parts:
            assert not re.search(r"https?://", path.read_text()), path


def test_vendored_leaflet_carries_its_licence() -> None:
    leaflet = CONSOLE_DIR / "vendor" / "leaflet"
    assert "BSD 2-Clause" in (leaflet / "LICENSE").read_text() and (leaflet / "leaflet-src.esm.js").exists()
    assert "sourceMappingURL" not in (leaflet / "leaflet-src.esm.js").read_text()[-300:]
