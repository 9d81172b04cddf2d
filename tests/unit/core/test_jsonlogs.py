"""lf_core.jsonlogs: the JSON line every platform process writes on stderr, and the two ways to set loggers up."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import sys
from collections.abc import Iterator

import pytest
from lf_core import jsonlogs


@pytest.fixture
def saved_loggers() -> Iterator[None]:
    names = ("lf_test_jsonlogs", "lf_test_jsonlogs.child", "nats")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level) for name in names}
    propagate = {name: logging.getLogger(name).propagate for name in names}
    yield
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate[name]


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("lf_dispatcher", logging.WARNING, __file__, 1, "call_%s", ("failed",), None)
    record.created = 1_700_000_000.123456
    record.__dict__.update(extra)
    return record


def test_a_line_holds_ts_level_logger_pid_event_then_the_fields_in_that_order() -> None:
    line = jsonlogs.JsonFormatter().format(_record(fields={"function": "hello", "attempt": 2}))
    assert line == (
        '{"ts":"2023-11-14T22:13:20.123+00:00","level":"warning","logger":"lf_dispatcher",'
        f'"pid":{os.getpid()},"event":"call_failed","function":"hello","attempt":2}}'
    )


def test_an_exception_is_one_field_and_fields_that_are_not_a_mapping_are_left_out() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record(fields=["not", "a", "dict"], exc_info=sys.exc_info())
    line = json.loads(jsonlogs.JsonFormatter().format(record))
    assert list(line) == ["ts", "level", "logger", "pid", "event", "exception"]
    assert "RuntimeError: boom" in line["exception"]


def test_configure_sends_the_named_loggers_at_the_level_and_quiets_nats(
    saved_loggers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    jsonlogs.configure("debug", ("lf_test_jsonlogs",))
    logging.getLogger("lf_test_jsonlogs.child").debug("ready", extra={"fields": {"port": 1}})
    logging.getLogger("nats").info("reconnecting")  # below warning: not written
    logging.getLogger("nats").warning("gone")
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("lf_test_jsonlogs.child", "ready"),
        ("nats", "gone"),
    ]
    assert lines[0]["port"] == 1 and lines[0]["level"] == "debug"
    assert not logging.getLogger("lf_test_jsonlogs").propagate


def test_dict_config_is_the_same_configuration_for_dictconfig() -> None:
    config = jsonlogs.dict_config("warning", ("lf_test_jsonlogs",), others={"nats": "error"})
    assert config["loggers"] == {
        "lf_test_jsonlogs": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "nats": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    }
    assert config["handlers"]["stderr"] == {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    assert config["disable_existing_loggers"] is False
    # dictConfig resolves the formatter by its dotted path (in every granian worker): it must name this class.
    factory = logging.config.BaseConfigurator({}).resolve(config["formatters"]["json"]["()"])
    assert factory is jsonlogs.JsonFormatter
