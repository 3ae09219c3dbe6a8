"""What other apps plug into the config page, without models_config importing them.

models_config sits below staging (staging reads configs; a config never needs a job), yet the admin's
config page shows how each version did, which only staging can count. So staging registers its reader
here in `StagingConfig.ready()`, and the page asks `version_metrics(slug)`: an explicit, one-slot
registry rather than an import (docs/architecture.md#metrics-on-the-config-page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class VersionFigures(Protocol):
    """One row of the page's metrics table: a config version on one arm (`staging.metrics.VersionMetrics`)."""

    version: int | None
    arm: str
    attempts: int
    succeeded: int
    cost: Any
    compared_with: int | None

    @property
    def success_rate(self) -> float | None: ...


MetricsReader = Callable[[str], Sequence[VersionFigures]]

_metrics_reader: MetricsReader | None = None


def register_metrics_reader(reader: MetricsReader) -> None:
    """Called once by the app that counts attempts; a second call replaces the first (tests may)."""
    global _metrics_reader
    _metrics_reader = reader


def version_metrics(slug: str) -> Sequence[VersionFigures]:
    """Figures per version and arm of `slug`, newest first; empty when no app registered a reader."""
    return _metrics_reader(slug) if _metrics_reader is not None else []
