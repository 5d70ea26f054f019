"""Test support for the operator tests: a stand-in for a library step that records how it was called."""

from __future__ import annotations

from typing import Any


class StepCall:
    """Records a step's keyword arguments and checks its scratch exists while it runs."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.kwargs: dict[str, Any] = {}

    def __call__(self, **kwargs: Any) -> Any:
        assert kwargs["scratch"].is_dir(), "the step runs in an existing scratch folder"
        self.kwargs = kwargs
        return self.result
