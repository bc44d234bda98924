"""Query parameters of the history endpoints, and their check against what the service knows.

Unknown parameter names are refused (``extra="forbid"``): a misspelt filter must not silently
return everything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from service.api.errors import ApiError
from service.api.schemas import Id, UtcTime
from service.db import InspectionFilter
from service.db.summary import Bucket, GroupBy

MAX_PAGE = 1000
BUCKET_SPAN = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_BUCKETS = {"hour": 24, "day": 30}
MAX_BUCKETS = 24 * 92
"""A summary covers at most this many buckets: three months of hours, six years of days."""


class HistoryQuery(BaseModel):
    """Which inspections: every filter optional; ``since`` inclusive, ``until`` exclusive."""

    model_config = ConfigDict(extra="forbid")

    line_id: str | None = Id
    camera_id: str | None = Id
    coil_id: str | None = Id
    class_id: int | None = Field(default=None, ge=1, description="has a defect of this class")
    has_defect: bool | None = None
    since: UtcTime | None = Field(default=None, description="received at or after (ISO 8601)")
    until: UtcTime | None = Field(default=None, description="received before (ISO 8601)")
    min_area: int | None = Field(
        default=None, ge=1, description="has a defect (of class_id, if given) of this many pixels"
    )

    def to_filter(self, classes: dict[int, str] | None) -> InspectionFilter:
        """The filter; 422 for a class the model does not have or a reversed range."""
        if classes is not None and self.class_id is not None and self.class_id not in classes:
            known = ", ".join(f"{k} ({n})" for k, n in sorted(classes.items()))
            raise ApiError(422, "unknown_class", f"no defect class {self.class_id}; known: {known}")
        check_range(self.since, self.until)
        return InspectionFilter(**self.model_dump(include=set(HistoryQuery.model_fields)))


class PageQuery(HistoryQuery):
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200, description="a page's next_cursor")


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ApiError(422, "reversed_range", f"since ({since}) must be before until ({until})")


class SummaryQuery(BaseModel):
    """A trend: ``until`` defaults to now, ``since`` to 24 hours or 30 days before it."""

    model_config = ConfigDict(extra="forbid")

    bucket: Bucket = "hour"
    group_by: GroupBy | None = Field(default=None, description="one series per line or camera")
    since: UtcTime | None = None
    until: UtcTime | None = None
    line_id: str | None = Id
    camera_id: str | None = Id
    coil_id: str | None = Id

    def window(self) -> tuple[datetime, datetime]:
        """(since, until) with defaults; 422 for a reversed or too long range."""
        until = self.until or datetime.now(UTC)
        span = BUCKET_SPAN[self.bucket]
        since = self.since or until - DEFAULT_BUCKETS[self.bucket] * span
        check_range(since, until)
        if (until - since) / span > MAX_BUCKETS:
            raise ApiError(
                422,
                "range_too_long",
                f"{until - since} is more than {MAX_BUCKETS} {self.bucket} buckets; "
                "narrow the range or use a larger bucket",
            )
        return since, until

    def to_filter(self, since: datetime, until: datetime) -> InspectionFilter:
        return InspectionFilter(
            line_id=self.line_id,
            camera_id=self.camera_id,
            coil_id=self.coil_id,
            since=since,
            until=until,
        )
