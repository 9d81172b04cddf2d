"""The `lf` CLI against a running `lf dev`: invoke and list."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import LfDev

pytestmark = pytest.mark.e2e


def test_invoke_prints_the_answer(lf_dev: LfDev) -> None:
    assert lf_dev.lf("invoke", "slow", "--path", "?seconds=0").stdout == b'{"slept":0.0}'


def test_invoke_posts_data_from_stdin_and_shows_headers(lf_dev: LfDev) -> None:
    result = lf_dev.lf(
        "invoke", "echo", "-d", "-", "-H", "Content-Type: application/json", "-v", input_=b'{"a": [1, 2]}'
    )
    assert json.loads(result.stdout)["json"] == {"a": [1, 2]}
    assert b"200 OK" in result.stderr and b"x-call-id" in result.stderr.lower()


def test_invoke_fails_on_an_error_status(lf_dev: LfDev) -> None:
    result = lf_dev.lf("invoke", "fail", check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["layer"] == "function"


def test_invoke_refuses_a_bad_name_before_sending(lf_dev: LfDev) -> None:
    result = lf_dev.lf("invoke", "Bad!", check=False)
    assert result.returncode == 1
    assert b"DNS-1123" in result.stderr


def test_list_shows_every_function_running(lf_dev: LfDev) -> None:
    functions = {f["name"]: f for f in lf_dev.state()}
    assert {"hello", "echo", "fail", "slow", "gate"} <= functions.keys()
    assert functions["echo"]["url"] == lf_dev.url("echo")
    assert all(f["ready"] == f["replicas"] >= 1 for f in functions.values() if f["name"] != "fresh")
    table = lf_dev.lf("list").stdout.decode()
    assert "hello" in table and "running" in table
