"""LF_LEADER_ELECTION*: off by default, and a setting that cannot work is refused naming it (the election itself runs
against the real kube-apiserver in tests/operator/test_leader_election.py)."""

from __future__ import annotations

import pytest
from lf_controlplane.operator.leader import ElectionConfig, micro_time

ON = {"LF_LEADER_ELECTION": "true", "LF_LEADER_ELECTION_NAMESPACE": "lf-system", "LF_LEADER_ELECTION_ID": "pod-0"}


@pytest.mark.parametrize("value", ["", "false", "0"])
def test_off_unless_asked(value: str) -> None:
    assert ElectionConfig.from_env({"LF_LEADER_ELECTION": value}) is None


def test_on_with_defaults_like_client_go() -> None:
    config = ElectionConfig.from_env(ON)
    assert config == ElectionConfig(namespace="lf-system", identity="pod-0")
    assert (config.lease_name, config.lease_duration_s, config.renew_deadline_s, config.retry_period_s) == (
        "lf-operator",
        15.0,
        10.0,
        2.0,
    )


def test_identity_defaults_to_something_unique() -> None:
    config = ElectionConfig.from_env({k: v for k, v in ON.items() if k != "LF_LEADER_ELECTION_ID"})
    assert config is not None and config.identity


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"LF_LEADER_ELECTION": "yes"}, "LF_LEADER_ELECTION"),
        ({"LF_LEADER_ELECTION_NAMESPACE": ""}, "LF_LEADER_ELECTION_NAMESPACE"),
        ({"LF_LEADER_ELECTION_LEASE_DURATION": "soon"}, "LF_LEADER_ELECTION_LEASE_DURATION"),
        ({"LF_LEADER_ELECTION_RETRY_PERIOD": "0"}, "LF_LEADER_ELECTION_RETRY_PERIOD"),
        ({"LF_LEADER_ELECTION_RENEW_DEADLINE": "15"}, "LF_LEADER_ELECTION_RENEW_DEADLINE"),
        ({"LF_LEADER_ELECTION_RETRY_PERIOD": "10"}, "LF_LEADER_ELECTION_RETRY_PERIOD"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_by_name(extra: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ElectionConfig.from_env({**ON, **extra})


def test_micro_time_is_what_the_apiserver_takes() -> None:
    import datetime as dt

    moment = dt.datetime(2026, 12, 7, 15, 4, 5, 123456, tzinfo=dt.UTC)
    assert micro_time(moment) == "2026-12-07T15:04:05.123456Z"
