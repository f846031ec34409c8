"""Site files load into a SiteConfig, or fail with every problem reported as `file:line:col: message`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_drivers.registry import DRIVERS
from guardlink.siteconfig import BrokerUrl, ConfigError, load_site, parse_site

REPO = Path(__file__).resolve().parent.parent
SCHOOL = REPO / "firmware_configs" / "sites" / "school.yaml"
FILENAME = "sites/test.yaml"
LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")

SITE = """\
site:
  id: school
  name: Test School
  district: xincheng
  location: {lat: 40.8421, lon: 111.7512}
broker: mqtt://127.0.0.1:1883
police:
  broker: mqtt://127.0.0.1:1884
zones:
  - {id: gate, name: Main gate}
  - {id: yard}
devices:
  - id: btn-gate
    driver: zigbee2mqtt
    zone: gate
    location: {lat: 40.84245, lon: 111.75042}
  - {id: wear-li, driver: guardlink_wearable}
guards:
  - {id: g-li, name: Li Wei, wearable: wear-li}
"""


def edited(old: str, new: str, text: str = SITE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def position_of(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) where the `occurrence`-th `needle` starts in `text`."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def errors(text: str, filename: str = FILENAME) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_site(text, filename, known_drivers=DRIVERS.keys())
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


def located(message: str, filename: str = FILENAME) -> tuple[int, int, str]:
    """Split `file:line:col: message`, failing unless the message has exactly that shape."""
    match = LOCATED.match(message)
    assert match, f"not file:line:col: message -> {message!r}"
    assert match["file"] == filename
    return int(match["line"]), int(match["col"]), match["message"]


def only_error(text: str) -> tuple[int, int, str]:
    [message] = errors(text)
    return located(message)


# --- Valid files --------------------------------------------------------------------------------


def test_example_school_site_loads_with_registered_drivers() -> None:
    config = load_site(SCHOOL, known_drivers=DRIVERS.keys())
    assert config.site.id == "hohhot-no3-primary"
    assert {d.driver for d in config.devices} <= DRIVERS.keys()
    assert config.device("btn-gate").duress_actions == ["triple"]
    assert config.device("btn-yard").topic == "zigbee2mqtt/Yard Button"
    assert {g.wearable for g in config.guards} <= {d.id for d in config.devices}


def test_minimal_valid_site_parses_with_defaults() -> None:
    config = parse_site(SITE, FILENAME, known_drivers=DRIVERS.keys())
    button = config.device("btn-gate")
    assert (button.zone, button.location.point().lat, button.panic_actions) == ("gate", 40.84245, ["single", "double", "hold", "long"])
    assert config.guards[0].roles == ["patrol"] and config.guards[0].on_duty
    assert config.device("nope") is None


def test_without_known_drivers_any_driver_name_is_accepted() -> None:
    config = parse_site(edited("driver: zigbee2mqtt", "driver: zwave"), FILENAME)
    assert config.device("btn-gate").driver == "zwave"


# --- One error, at the right place --------------------------------------------------------------


def test_invalid_id_is_reported_at_the_value() -> None:
    text = edited("id: school", "id: School!")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "School!")
    assert message.startswith("site.id: 'School!' is not a valid id (lowercase letters, digits")


def test_latitude_out_of_range_is_reported_at_the_value() -> None:
    text = edited("lat: 40.8421", "lat: 100")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "100")
    assert message.startswith("site.location.lat: ") and "90" in message


def test_missing_police_section_is_reported_at_the_top_mapping() -> None:
    text = edited("police:\n  broker: mqtt://127.0.0.1:1884\n", "")
    assert only_error(text) == (1, 1, "police: required but missing")


def test_missing_nested_key_is_reported_at_the_mapping_that_lacks_it() -> None:
    text = edited("{lat: 40.8421, lon: 111.7512}", "{lat: 40.8421}")
    assert only_error(text) == (*position_of(text, "{lat: 40.8421}"), "site.location.lon: required but missing")


def test_unknown_key_is_reported_at_the_key() -> None:
    text = edited("    zone: gate\n", "    zone: gate\n    colour: red\n")
    assert only_error(text) == (*position_of(text, "colour"), "devices.0.colour: unknown key (check the spelling)")


def test_unknown_top_level_key_is_reported_at_the_key() -> None:
    text = SITE + "gaurds: []\n"
    assert only_error(text) == (*position_of(text, "gaurds"), "gaurds: unknown key (check the spelling)")


def test_unknown_driver_is_reported_with_the_known_drivers() -> None:
    text = edited("driver: zigbee2mqtt", "driver: zwave")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "zwave")
    assert message == f"device 'btn-gate' uses unknown driver 'zwave' (known: {', '.join(sorted(DRIVERS))})"


def test_undefined_zone_is_reported_with_the_defined_zones() -> None:
    text = edited("zone: gate", "zone: hall")
    assert only_error(text) == (
        *position_of(text, "hall"),
        "device 'btn-gate' refers to zone 'hall', which is not defined (defined: gate, yard)",
    )


def test_zone_reference_without_any_zones_says_none_are_defined() -> None:
    text = edited("zones:\n  - {id: gate, name: Main gate}\n  - {id: yard}\n", "")
    assert only_error(text)[2].endswith("which is not defined (defined: none)")


def test_guard_wearable_that_is_not_a_device_is_reported() -> None:
    text = edited("wearable: wear-li", "wearable: wear-zhang")
    assert only_error(text) == (
        *position_of(text, "wear-zhang"),
        "guard 'g-li' wears 'wear-zhang', which is not among the devices",
    )


def test_wearable_worn_by_two_guards_is_reported_at_the_second() -> None:
    text = SITE + "  - {id: g-wang, name: Wang Fang, wearable: wear-li}\n"
    assert only_error(text) == (*position_of(text, "wear-li", 3), "guard 'g-wang' wears 'wear-li', already worn by 'g-li'")


def test_duplicate_device_id_is_reported_at_the_second_device() -> None:
    text = edited("{id: wear-li, driver: guardlink_wearable}", "{id: btn-gate, driver: guardlink_wearable}")
    text = edited("wearable: wear-li", "wearable: btn-gate", text)
    assert only_error(text) == (*position_of(text, "btn-gate", 2), "duplicate device id 'btn-gate'")


def test_duplicate_zone_id_is_reported() -> None:
    text = edited("{id: yard}", "{id: gate}")
    assert only_error(text) == (*position_of(text, "gate", 3), "duplicate zone id 'gate'")


def test_two_devices_on_one_topic_are_reported() -> None:
    text = edited("    zone: gate\n", "    zone: gate\n    topic: shared/topic\n")
    text = edited("{id: wear-li, driver: guardlink_wearable}", "{id: wear-li, driver: guardlink_wearable, topic: shared/topic}", text)
    assert only_error(text) == (*position_of(text, "shared/topic", 2), "device 'wear-li' uses topic 'shared/topic' of device 'btn-gate'")


def test_wildcard_device_topic_is_rejected() -> None:
    text = edited("    zone: gate\n", "    zone: gate\n    topic: zigbee2mqtt/+\n")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "zigbee2mqtt/+")
    assert message.startswith("devices.0.topic: topic 'zigbee2mqtt/+' must be a concrete MQTT topic")


def test_duplicate_yaml_key_is_reported_at_the_second_key() -> None:
    text = edited("  name: Test School\n", "  name: Test School\n  name: Other School\n")
    assert only_error(text) == (*position_of(text, "name", 2), "duplicate key 'name'")


def test_invalid_yaml_syntax_is_reported_where_the_parser_stopped() -> None:
    text = edited("  name: Test School", "  name: Test: School")
    assert only_error(text) == (*position_of(text, ": School"), "invalid YAML: mapping values are not allowed here")


def test_unclosed_flow_mapping_is_reported_on_the_line_where_parsing_failed() -> None:
    text = edited("  - {id: yard}", "  - {id: yard")
    line, _, message = only_error(text)
    assert line == position_of(text, "devices:")[0]
    assert message.startswith("invalid YAML: ")


def test_tab_indentation_is_reported_as_invalid_yaml_at_the_tab() -> None:
    text = edited("  name: Test School", "\tname: Test School")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "\t")
    assert message.startswith("invalid YAML: ")


def test_control_character_is_reported_as_invalid_yaml_at_its_position() -> None:
    text = edited("name: Test School", "name: Test\x07School")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "\x07")
    assert message == "invalid YAML: control character U+0007 is not allowed"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n"])
def test_empty_file_is_reported(text: str) -> None:
    assert only_error(text) == (1, 1, "the file is empty; a site needs at least 'site' and 'police'")


@pytest.mark.parametrize("text", ["- site\n- police\n", "just a sentence\n", "42\n"])
def test_file_that_is_not_a_mapping_is_reported(text: str) -> None:
    line, col, message = only_error(text)
    assert (line, col) == (1, 1)
    assert message.startswith("a site file is a mapping")


def test_non_mqtt_police_broker_is_reported() -> None:
    text = edited("broker: mqtt://127.0.0.1:1884", "broker: http://127.0.0.1:1884")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "http://")
    assert message.startswith("police.broker: broker URL 'http://127.0.0.1:1884' must start with mqtt://")


def test_non_mqtt_site_broker_is_reported() -> None:
    text = edited("broker: mqtt://127.0.0.1:1883", "broker: tcp://broker.local")
    line, col, message = only_error(text)
    assert (line, col) == position_of(text, "tcp://")
    assert message.startswith("broker: broker URL 'tcp://broker.local' must start with mqtt://")


# --- Several errors at once ---------------------------------------------------------------------


def test_several_field_errors_are_reported_together_in_file_order() -> None:
    text = edited("id: school", "id: School!")
    text = edited("lon: 111.7512", "lon: 200", text)
    text = edited("    zone: gate\n", "    zone: gate\n    colour: red\n", text)
    messages = errors(text)
    assert [located(m)[:2] for m in messages] == [position_of(text, "School!"), position_of(text, "200"), position_of(text, "colour")]
    assert [located(m)[2].split(":")[0] for m in messages] == ["site.id", "site.location.lon", "devices.0.colour"]


def test_duplicate_key_and_cross_reference_errors_are_reported_together() -> None:
    text = edited("  name: Test School\n", "  name: Test School\n  name: Other School\n")
    text = edited("zone: gate", "zone: hall", text)
    text = edited("wearable: wear-li", "wearable: wear-zhang", text)
    messages = errors(text)
    assert [located(m)[:2] for m in messages] == [
        position_of(text, "name", 2),
        position_of(text, "hall"),
        position_of(text, "wear-zhang"),
    ]


def test_duplicate_key_is_reported_alongside_validation_errors() -> None:
    text = edited("  name: Test School\n", "  name: Test School\n  name: Other School\n")
    text = edited("lat: 40.8421", "lat: -95", text)
    messages = errors(text)
    assert [located(m)[:2] for m in messages] == [position_of(text, "name", 2), position_of(text, "-95")]


# --- load_site: files ---------------------------------------------------------------------------


def test_load_site_reports_errors_with_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(edited("zone: gate", "zone: hall"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path, known_drivers=DRIVERS.keys())
    [message] = info.value.messages
    assert located(message, str(path))[:2] == position_of(path.read_text(), "hall")


def test_load_site_reports_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert info.value.messages == [f"{path}:1:1: the file is empty; a site needs at least 'site' and 'police'"]


def test_load_site_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(path)
    [message] = info.value.messages
    assert message.startswith(f"{path}: cannot read site file")


def test_load_site_reports_non_utf8_bytes_at_their_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SITE.replace("Test School", "Caf\xe9 School").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    [message] = info.value.messages
    line, col, text = located(message, str(path))
    assert (line, col) == position_of(SITE.replace("Test School", "Caf\xe9 School"), "\xe9")
    assert "UTF-8" in text


# --- Broker URLs --------------------------------------------------------------------------------


def test_broker_url_with_host_and_port() -> None:
    assert BrokerUrl.parse("mqtt://broker.example:1884") == BrokerUrl(host="broker.example", port=1884)


def test_broker_url_defaults_to_port_1883() -> None:
    url = BrokerUrl.parse("mqtt://10.0.0.5")
    assert (url.host, url.port, url.username, url.password) == ("10.0.0.5", 1883, None, None)
    assert str(url) == "mqtt://10.0.0.5:1883"


def test_broker_url_without_scheme_is_mqtt() -> None:
    assert BrokerUrl.parse("localhost:1999") == BrokerUrl(host="localhost", port=1999)


def test_broker_url_with_credentials() -> None:
    url = BrokerUrl.parse("mqtt://edge:s3cret@police.example:8883")
    assert (url.host, url.port, url.username, url.password) == ("police.example", 8883, "edge", "s3cret")
    assert "s3cret" not in str(url)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://broker.example:1883", "must start with mqtt://"),
        ("mqtts+ws://broker.example:8883", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "has no host"),
        ("mqtt://:1883", "has no host"),
        ("mqtt://broker.example:port", "invalid port"),
        ("mqtt://broker.example:70000", "invalid port"),
        ("mqtt://broker.example:0", "invalid port"),
    ],
)
def test_broker_url_rejects_what_cannot_be_connected_to(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        BrokerUrl.parse(url)


# --- The CLI ------------------------------------------------------------------------------------


def test_edge_cli_exits_1_with_located_error_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "bad-site.yaml"
    text = edited("zone: gate", "zone: hall")
    # Unreachable brokers: if the CLI tried to connect before checking the file, it would hang or fail differently.
    text = text.replace("mqtt://127.0.0.1:1883", "mqtt://192.0.2.1:1").replace("mqtt://127.0.0.1:1884", "mqtt://192.0.2.1:2")
    path.write_text(text, encoding="utf-8")
    line, col = position_of(text, "hall")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "edge", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    assert f"{path}:{line}:{col}: device 'btn-gate' refers to zone 'hall'" in result.stderr
    assert "Traceback" not in result.stderr
