"""Broker URLs with TLS and credentials: what they accept, what they refuse, and that the password never shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.connection import threaded_client
from guardlink.siteconfig import BrokerUrl, ConfigError, parse_site

SITE = """
site: {{id: s1, name: Site, district: d1, location: {{lat: 40.8, lon: 111.7}}}}
broker: "{site}"
police: {{broker: "{police}"}}
"""


def test_mqtts_defaults_to_port_8883_with_the_system_cas() -> None:
    url = BrokerUrl.parse("mqtts://police.example")
    assert (url.host, url.port, url.tls, url.ca_file, url.cert_file) == ("police.example", 8883, True, None, None)
    assert str(url) == "mqtts://police.example:8883"


def test_tls_files_and_password_source_come_as_query_options() -> None:
    url = BrokerUrl.parse("mqtts://edge@police.example:8884?ca=/etc/ca.pem&cert=/etc/edge.crt&key=/etc/edge.key&password_file=/run/pw")
    assert (url.username, url.ca_file, url.cert_file, url.key_file, url.password_file) == ("edge", "/etc/ca.pem", "/etc/edge.crt", "/etc/edge.key", "/run/pw")


def test_password_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    url = BrokerUrl.parse("mqtt://edge@h?password_env=GUARDLINK_TEST_PW")
    with pytest.raises(ValueError, match="GUARDLINK_TEST_PW .* is not set"):
        url.secret()
    monkeypatch.setenv("GUARDLINK_TEST_PW", "from-env")
    assert url.secret() == "from-env"


def test_password_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    assert BrokerUrl.parse(f"mqtt://edge@h?password_file={tmp_path / 'pw'}").secret() == "from-file"
    with pytest.raises(ValueError, match="cannot read password_file"):
        BrokerUrl.parse(f"mqtt://edge@h?password_file={tmp_path / 'missing'}").secret()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mqtt://h?ca=/etc/ca.pem", "TLS options; write mqtts://"),
        ("mqtts://h?key=/k", "key= without cert="),
        ("mqtts://h?cafile=/c", "unknown option 'cafile' \\(known: ca, cert, key, password_env, password_file\\)"),
        ("mqtts://h?ca=", "option 'ca' needs a value"),
        ("mqtt://u:pw@h?password_env=X", "gives the password twice"),
    ],
)
def test_broker_url_options_that_cannot_work_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        BrokerUrl.parse(url)


def test_the_password_never_shows_in_str_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = BrokerUrl.parse("mqtts://edge:hunter2@police.example")
    assert url.secret() == "hunter2"
    assert "hunter2" not in str(url) and "hunter2" not in repr(url)
    with pytest.raises(ValueError) as info:
        BrokerUrl.parse("mqtts://edge:hunter2@police.example?nope=1")
    assert "hunter2" not in str(info.value) and "edge:***@" in str(info.value)
    with pytest.raises(ConfigError) as bad_site:
        parse_site(SITE.format(site="mqtt://a:hunter2@h?ca=/x", police="mqtts://p"), "site.yaml")
    assert "hunter2" not in "\n".join(bad_site.value.messages)
    caplog.set_level(logging.DEBUG)
    threaded_client(url)  # paho logs nothing of it either
    assert "hunter2" not in caplog.text


def test_a_site_file_takes_mqtts_brokers() -> None:
    config = parse_site(SITE.format(site="mqtt://127.0.0.1:1883", police="mqtts://edge@police.example?password_env=POLICE_PW"), "site.yaml")
    assert BrokerUrl.parse(config.police.broker).password_env == "POLICE_PW"
