"""Settings from a plain mapping: defaults, every variable, and errors that name the variable."""

from __future__ import annotations

import pytest
from lf_dataplane.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8080, 1)
    assert s.header_read_timeout_s == 10.0
    assert s.header_read_timeout_ms == 10_000
    assert s.max_header_bytes == 64 * 1024
    assert s.default_timeout_s == 60.0
    assert s.default_max_request_bytes == s.default_max_response_bytes == 6 * 1024 * 1024
    assert s.drain_delay_s == 0.0
    assert s.nats_servers == ["nats://127.0.0.1:4222"]


def test_every_variable() -> None:
    s = Settings.from_env(
        {
            "LF_HOST": "0.0.0.0",
            "LF_PORT": "9000",
            "LF_NATS_URL": "nats://a:4222, nats://b:4222",
            "LF_WORKERS": "2",
            "LF_HEADER_READ_TIMEOUT": "2500ms",
            "LF_MAX_HEADER_BYTES": "32Ki",
            "LF_DRAIN_DELAY": "5s",
            "LF_DRAIN_TIMEOUT": "1.5s",
            "LF_DEFAULT_TIMEOUT": "2m",
            "LF_DEFAULT_MAX_REQUEST_BYTES": "1Mi",
            "LF_DEFAULT_MAX_RESPONSE_BYTES": "1000",
            "LF_LOG_LEVEL": "DEBUG",
        }
    )
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert s.workers == 2
    assert s.header_read_timeout_ms == 2500
    assert s.max_header_bytes == 32 * 1024
    assert s.drain_delay_s == 5.0
    assert s.drain_timeout_whole_s == 2  # rounded up for granian
    assert s.default_timeout_s == 120.0
    assert s.default_max_request_bytes == 1024 * 1024
    assert s.default_max_response_bytes == 1000
    assert s.log_level == "debug"


def test_empty_values_keep_defaults_and_zero_delay_is_allowed() -> None:
    assert Settings.from_env({"LF_PORT": " ", "LF_DRAIN_DELAY": "0"}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LF_PORT", "http"),
        ("LF_PORT", "70000"),
        ("LF_WORKERS", "0"),
        ("LF_HEADER_READ_TIMEOUT", "soon"),
        ("LF_HEADER_READ_TIMEOUT", "0"),
        ("LF_MAX_HEADER_BYTES", "lots"),
        ("LF_DRAIN_DELAY", "-1s"),
        ("LF_DRAIN_TIMEOUT", "forever"),
        ("LF_DEFAULT_TIMEOUT", "1 minute"),
        ("LF_DEFAULT_MAX_REQUEST_BYTES", "6MB"),
        ("LF_DEFAULT_MAX_RESPONSE_BYTES", "0"),
        ("LF_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
