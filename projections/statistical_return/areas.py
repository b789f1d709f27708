"""Reference data about MAPPA areas: names, BCUs, populations, release-notice lead times.

The file's shape is fixed by the contract (statistical-return.md, "Reference
data"); the project ships ``infra/areas.json`` for the areas in the seeds, and the
``MAPPA_AREAS`` environment variable can point at another file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AREAS_ENV_VAR",
    "DEFAULT_AREAS_PATH",
    "Area",
    "AreaCatalogue",
    "areas_path",
    "load_areas",
]

# projections/statistical_return/areas.py -> <root>/infra/areas.json, which is
# also where setuptools ships it (package data of ``infra``) next to ``projections``.
DEFAULT_AREAS_PATH: Final = Path(__file__).resolve().parents[2] / "infra" / "areas.json"
AREAS_ENV_VAR: Final = "MAPPA_AREAS"

# ISO 8601 durations as used for lead times: P3M, P6W, P1Y2M10D, ...
_DURATION: Final = re.compile(r"^P(?=\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$")


class Area(BaseModel):
    """One MAPPA area. ``population`` and lead times are keyed as in the file."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    code: str = Field(min_length=1)
    name: str = ""  # optional: an area without one is called by its code
    bcus: tuple[str, ...] = ()
    # Keyed by the reporting year's first calendar year ("2004" is 2004/05).
    population: dict[int, int] = Field(default_factory=dict)
    # Keyed by management level ("3", "2"): how long before an expected release
    # the prison must notify police and probation, as an ISO 8601 duration.
    release_notice_lead_times: dict[int, str] = Field(
        default_factory=dict, alias="releaseNoticeLeadTimes"
    )

    @field_validator("population")
    @classmethod
    def _populations_are_positive(cls, population: dict[int, int]) -> dict[int, int]:
        for year, people in population.items():
            if people <= 0:
                raise ValueError(f"population for {year} must be positive, not {people}")
        return population

    @field_validator("release_notice_lead_times")
    @classmethod
    def _lead_times_are_durations(cls, lead_times: dict[int, str]) -> dict[int, str]:
        for level, duration in lead_times.items():
            if level not in (1, 2, 3):
                raise ValueError(f"lead time for unknown level {level}")
            if not _DURATION.match(duration):
                raise ValueError(f"lead time for level {level} is not an ISO duration: {duration}")
        return lead_times

    def population_for(self, year: int) -> int | None:
        """The population for ``year``: a missing year takes the nearest earlier one."""
        known = [known_year for known_year in self.population if known_year <= year]
        return self.population[max(known)] if known else None


class AreaCatalogue(BaseModel):
    """Every area of a reference data file."""

    model_config = ConfigDict(frozen=True)

    areas: tuple[Area, ...] = ()

    @model_validator(mode="after")
    def _codes_are_unique(self) -> AreaCatalogue:
        codes = [area.code for area in self.areas]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"area codes listed more than once: {', '.join(duplicates)}")
        return self

    def get(self, code: str) -> Area | None:
        return next((area for area in self.areas if area.code == code), None)

    def population_for(self, area: str, year: int) -> int | None:
        """Population of ``area`` for the year starting 1 April ``year``.

        A missing year takes the nearest earlier one; None when the area or any
        earlier year is unknown (the return's ``ia`` is then null).
        """
        found = self.get(area)
        return found.population_for(year) if found else None

    def lead_time_for(self, area: str, level: int | str) -> str | None:
        """The release-notice lead time (ISO 8601 duration) of ``area`` at ``level``."""
        found = self.get(area)
        try:
            key = int(level)
        except (TypeError, ValueError):
            return None
        return found.release_notice_lead_times.get(key) if found else None


class AreasFileError(ValueError):
    """The areas reference data file is missing or does not conform."""


def load_areas(path: Path = DEFAULT_AREAS_PATH) -> AreaCatalogue:
    """Read and validate an areas reference data file; raise :class:`AreasFileError`
    saying which file and what is wrong."""
    try:
        return AreaCatalogue.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise AreasFileError(f"areas reference data {path}: {error.strerror}") from None
    except ValueError as error:
        raise AreasFileError(f"areas reference data {path} is invalid: {error}") from None


def areas_path(explicit: Path | str | None = None) -> Path:
    """The file to read: ``explicit`` (``--areas``), else ``$MAPPA_AREAS``, else the shipped one."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(AREAS_ENV_VAR)
    return Path(from_env) if from_env else DEFAULT_AREAS_PATH
