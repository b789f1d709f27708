"""A group consumer that begins a rejoin because its metadata changed keeps at it until the
join completes (kafka-python 3.0 forgot it once the new assignment made its metadata
snapshots match again). On a real broker: tests/e2e/test_joining_before_the_topic_is_known.py."""

from __future__ import annotations

from infra.kafka import _rejoin_until_joined


class Coordinator:
    """kafka-python's ``ConsumerCoordinator.need_rejoin``, reduced to what decides it: the
    metadata the leader assigned from against the cluster's, and the base class's flag."""

    def __init__(self) -> None:
        self.rejoin_needed = False
        self.assigned_from = {"topic": set()}
        self.metadata = {"topic": set()}

    def need_rejoin(self) -> bool:
        return self.assigned_from != self.metadata or self.rejoin_needed

    def join_completed(self) -> None:
        self.rejoin_needed = False  # as the library does once a join's assignment is applied


def _metadata_changed_then_assigned_from(coordinator: Coordinator) -> None:
    coordinator.metadata = {"topic": {0, 1}}
    assert coordinator.need_rejoin()  # the poll that begins the rejoin, then runs out of time
    coordinator.assigned_from = coordinator.metadata  # the join's new assignment is made


def test_without_the_fix_the_rejoin_is_forgotten_once_the_new_assignment_is_made() -> None:
    coordinator = Coordinator()
    _metadata_changed_then_assigned_from(coordinator)
    assert not coordinator.need_rejoin()  # the next poll never takes up the finished join


def test_a_rejoin_begun_by_a_metadata_change_is_needed_until_the_join_completes() -> None:
    coordinator = Coordinator()
    _rejoin_until_joined(coordinator)
    _metadata_changed_then_assigned_from(coordinator)
    assert coordinator.need_rejoin()
    assert coordinator.need_rejoin()
    coordinator.join_completed()
    assert not coordinator.need_rejoin()


def test_a_coordinator_with_nothing_to_rejoin_is_not_told_to() -> None:
    coordinator = Coordinator()
    _rejoin_until_joined(coordinator)
    assert not coordinator.need_rejoin()
    assert coordinator.rejoin_needed is False
