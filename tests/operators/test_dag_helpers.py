"""Refresh settings: schedules and the params a scheduled run uses come only from the operator."""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import pytest

from imagenet_operators.dag_helpers import refresh_schedule, run_params
from imagenet_ops.core.errors import ConfigError

SCHEDULED, MANUAL = SimpleNamespace(run_type="scheduled"), SimpleNamespace(run_type="manual")
PARAMS = {"url": None, "sink_uri": None, "source": "go"}


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("off", None), ("@weekly", "@weekly")])
def test_refresh_schedule_is_the_operator_setting(monkeypatch, value, expected):
    monkeypatch.delenv("IMAGENET_OPS_SCHEDULE_IMAGENET_AUX", raising=False)
    if value is not None:
        monkeypatch.setenv("IMAGENET_OPS_SCHEDULE_IMAGENET_AUX", value)
    assert refresh_schedule("imagenet_aux") == expected


def test_scheduled_runs_take_the_refresh_variable_and_manual_runs_ignore_it():
    refresh = {"url": "http://mirror.internal/caffe_ilsvrc12.tar.gz", "sink_uri": "s3://b/aux"}
    with mock.patch.dict("os.environ", {"AIRFLOW_VAR_IMAGENET_OPS_REFRESH_IMAGENET_AUX": json.dumps(refresh)}):
        assert run_params(PARAMS, SCHEDULED, "imagenet_aux") == {**PARAMS, **refresh}
        assert run_params(PARAMS, MANUAL, "imagenet_aux") == PARAMS


def test_scheduled_runs_without_the_variable_use_the_param_defaults():
    assert run_params(PARAMS, SCHEDULED, "imagenet_aux") == PARAMS


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_a_bad_refresh_variable_names_itself(raw):
    with (
        mock.patch.dict("os.environ", {"AIRFLOW_VAR_IMAGENET_OPS_REFRESH_IMAGENET_AUX": raw}),
        pytest.raises(ConfigError, match="Variable imagenet_ops_refresh_imagenet_aux"),
    ):
        run_params(PARAMS, SCHEDULED, "imagenet_aux")


def test_a_malformed_sink_fails_when_the_run_resolves_not_after_the_download():
    from imagenet_operators.dag_helpers import sink_uri

    assert sink_uri("imagenet_aux", "s3://bucket/aux") == "s3://bucket/aux"
    with pytest.raises(ConfigError, match=r"'\.' and '\.\.' segments"):
        sink_uri("imagenet_aux", "s3://bucket/../../etc")
