"""Questions about consumer groups are asked again while the coordinator is not ready, and
only then. (On a real brand-new broker: tests/e2e/test_a_brand_new_broker.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    NotCoordinatorError,
)

from infra.kafka import while_the_coordinator_loads


def _answering_after(*failures: Exception) -> tuple[list[int], Callable[[], str]]:
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        if len(asked) <= len(failures):
            raise failures[len(asked) - 1]
        return "the answer"

    return asked, ask


def test_a_coordinator_not_ready_is_asked_again_until_it_answers() -> None:
    asked, ask = _answering_after(
        CoordinatorNotAvailableError(), NotCoordinatorError(), CoordinatorLoadInProgressError()
    )

    assert while_the_coordinator_loads(ask) == "the answer"
    assert len(asked) == 4


def test_any_other_error_is_raised_at_once() -> None:
    asked, ask = _answering_after(GroupAuthorizationFailedError())

    with pytest.raises(GroupAuthorizationFailedError):
        while_the_coordinator_loads(ask)
    assert len(asked) == 1


def test_a_coordinator_never_ready_is_raised_once_the_wait_is_over() -> None:
    asked, ask = _answering_after(*[CoordinatorNotAvailableError()] * 100)

    with pytest.raises(CoordinatorNotAvailableError):
        while_the_coordinator_loads(ask, within_seconds=0.5)
    assert 2 <= len(asked) < 10
