"""The district file: the example covers the demo site, and every problem is reported as file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardlink.districtconfig import load_district, parse_district
from guardlink.yamlconfig import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "firmware_configs" / "districts" / "hohhot-xincheng.yaml"


def test_the_example_district_places_the_demo_school_in_its_own_district(school) -> None:
    district = load_district(EXAMPLE)
    assert district.district.id == school.site.district
    assert district.community_of(school.site.id) == "dongjie"
    assert district.broker_url().port == 1883 and district.database_url().startswith("sqlite:///")


def test_every_problem_is_reported_at_its_place() -> None:
    text = (
        "district: {id: X, name: a, timezone: Mars/Base}\n"
        "broker: http://x\n"
        "communities:\n"
        "  - {id: a, name: A, chief: c, outline: [[1, 2], [3, 4]], sites: [s]}\n"
        "  - {id: a, name: A, chief: c, outline: [[1, 2], [3, 4], [100, 2]], sites: [s]}\n"
        "settings: {heartbeat_missses: 3}\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_district(text, "d.yaml")
    messages = raised.value.messages
    assert [m.split(": ")[0] for m in messages] == ["d.yaml:1:16", "d.yaml:1:38", "d.yaml:2:9", "d.yaml:4:41", "d.yaml:5:10", "d.yaml:5:41", "d.yaml:5:77", "d.yaml:6:12"]
    assert "community 'a' is defined twice" in messages[4] and "a site belongs to one community" in messages[6]
    assert "unknown key" in messages[7]


def test_the_hub_command_reports_a_bad_district_file_and_fails(tmp_path: Path) -> None:
    from cli.main import main

    bad = tmp_path / "d.yaml"
    bad.write_text("district: {id: x}\n")
    assert main(["hub", "--config", str(bad)]) == 1
