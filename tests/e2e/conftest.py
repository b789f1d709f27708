"""What every end-to-end test shares."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def group_membership_logged(caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python's group coordinator logged at INFO (each join, its generation, the
    leader's assignment, every error), shown with a failing test's captured logs: a
    rejoin that hung in CI left only a WARNING behind, nothing to say why."""
    caplog.set_level(logging.INFO, logger="kafka.coordinator")
