"""A parallel rebuild shares the offenders between processes by ranges of their ids."""

from __future__ import annotations

from infra.rebuild import offender_ranges


def test_offender_ranges_cover_every_id_once_in_order() -> None:
    assert offender_ranges(1) == [(None, None)]
    ranges = offender_ranges(3)
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(2))
    widths = [ranges[1][0].int, ranges[2][0].int - ranges[1][0].int]  # type: ignore[union-attr]
    assert max(widths) - min(widths) <= 1
