"""Settings.from_env: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from lf_runtime.settings import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Settings,
    SettingsError,
    parse_handler,
    redacted_nats_url,
)

BASE = {"LF_FUNCTION": "hello"}


def test_defaults() -> None:
    settings = Settings.from_env({**BASE, "LF_FUNCTION_DIR": "/srv/fn"})
    assert settings.function == "hello"
    assert settings.namespace == "default"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert (settings.handler_module, settings.handler_name) == ("handler", "handle")
    assert settings.function_dir == Path("/srv/fn")
    assert settings.concurrency == 16
    assert settings.queue_depth == 16
    assert settings.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 6 * 1024 * 1024
    assert settings.stuck_limit == 3
    assert settings.drain_timeout_s == 30.0
    assert settings.secrets_dir is None


def test_function_dir_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env(BASE).function_dir == tmp_path


def test_everything_set() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "LF_NAMESPACE": "team-a",
            "LF_NATS_URL": "nats://a:4222,tls://b:4443",
            "LF_HANDLER": "pkg.main:run",
            "LF_CONCURRENCY": "4",
            "LF_MAX_RESPONSE_BYTES": "1_000",
            "LF_STUCK_LIMIT": "1",
            "LF_DRAIN_TIMEOUT": "2.5s",
            "LF_SECRETS_DIR": "/var/secrets",
        }
    )
    assert settings.namespace == "team-a"
    assert (settings.handler_module, settings.handler_name) == ("pkg.main", "run")
    assert settings.concurrency == 4
    assert settings.queue_depth == 4, "the queue depth follows the concurrency by default"
    assert settings.max_response_bytes == 1000
    assert settings.stuck_limit == 1
    assert settings.drain_timeout_s == 2.5
    assert settings.secrets_dir == Path("/var/secrets")


def test_queue_depth_may_be_zero() -> None:
    assert Settings.from_env({**BASE, "LF_QUEUE_DEPTH": "0"}).queue_depth == 0


def test_empty_values_count_as_unset() -> None:
    assert Settings.from_env({**BASE, "LF_CONCURRENCY": "", "LF_NAMESPACE": " "}).concurrency == 16


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        ({}, "LF_FUNCTION", "required"),
        ({"LF_FUNCTION": "Hello_World"}, "LF_FUNCTION", "DNS-1123"),
        ({**BASE, "LF_NAMESPACE": "a.b"}, "LF_NAMESPACE", "DNS-1123"),
        ({**BASE, "LF_CONCURRENCY": "many"}, "LF_CONCURRENCY", "not an integer"),
        ({**BASE, "LF_CONCURRENCY": "0"}, "LF_CONCURRENCY", "out of range"),
        ({**BASE, "LF_QUEUE_DEPTH": "-1"}, "LF_QUEUE_DEPTH", "out of range"),
        ({**BASE, "LF_MAX_RESPONSE_BYTES": "6MiB"}, "LF_MAX_RESPONSE_BYTES", "not an integer"),
        ({**BASE, "LF_STUCK_LIMIT": "0"}, "LF_STUCK_LIMIT", "out of range"),
        ({**BASE, "LF_DRAIN_TIMEOUT": "soon"}, "LF_DRAIN_TIMEOUT", "seconds"),
        ({**BASE, "LF_DRAIN_TIMEOUT": "-1"}, "LF_DRAIN_TIMEOUT", "positive"),
        ({**BASE, "LF_DRAIN_TIMEOUT": "nan"}, "LF_DRAIN_TIMEOUT", "positive"),
        ({**BASE, "LF_HANDLER": "handle"}, "LF_HANDLER", "module.function"),
        ({**BASE, "LF_HANDLER": "my-mod.handle"}, "LF_HANDLER", "module.function"),
        ({**BASE, "LF_NATS_URL": "http://x:4222"}, "LF_NATS_URL", "nats://"),
        ({**BASE, "LF_NATS_URL": "nats://a:4222,"}, "LF_NATS_URL", "nats://"),
        ({**BASE, "LF_HEALTH_PORT": "65536"}, "LF_HEALTH_PORT", "out of range"),
        ({**BASE, "LF_HEALTH_PORT": "9100", "LF_METRICS_PORT": "9100"}, "LF_HEALTH_PORT", "own ports"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert variable in str(caught.value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("handler.handle", ("handler", "handle")),
        ("handler:handle", ("handler", "handle")),
        ("a.b.c.main", ("a.b.c", "main")),
        ("a.b:main", ("a.b", "main")),
    ],
)
def test_handler_spec(value: str, expected: tuple[str, str]) -> None:
    assert parse_handler(value) == expected


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        settings.concurrency = 2  # type: ignore[misc]


def test_connect_timeout() -> None:
    assert Settings.from_env(BASE).connect_timeout_s == 10.0
    assert Settings.from_env({**BASE, "LF_CONNECT_TIMEOUT": "0.5"}).connect_timeout_s == 0.5


def test_redacted_nats_url_drops_credentials() -> None:
    assert redacted_nats_url("nats://user:pw@a:4222, tls://tok@b") == "nats://a:4222,tls://b"


def test_health_listener() -> None:
    off = Settings.from_env(BASE)
    assert (off.health_port, off.health_host) == (0, "127.0.0.1")
    on = Settings.from_env({**BASE, "LF_HEALTH_PORT": "8081", "LF_HEALTH_HOST": "0.0.0.0", "LF_METRICS_PORT": "9091"})
    assert (on.health_port, on.health_host, on.metrics_port) == (8081, "0.0.0.0", 9091)
