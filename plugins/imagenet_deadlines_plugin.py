"""Registers the DAGs' custom deadline references (:mod:`imagenet_operators.deadlines`) with Airflow.

The api-server and scheduler evaluate a run's deadlines when they create the run; they find a
custom reference only among the plugins' ``deadline_references``, by its import path. The path
is ``imagenet_operators.deadlines.<Class>``, the same the DAG files serialize, so the classes are
imported from the package (the plugins manager also runs ``imagenet_operators/deadlines.py`` as a
module of its own, ``deadlines``, whose classes have another path and are not listed).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from imagenet_operators.deadlines import RunLimitDeadline, RuntimeMultipleDeadline


class ImagenetDeadlinesPlugin(AirflowPlugin):
    name = "imagenet_deadlines"
    deadline_references = [RunLimitDeadline, RuntimeMultipleDeadline]
