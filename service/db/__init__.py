"""The results database: ORM models, engine/session factory, data access, migrations."""

from service.db.engine import make_engine, make_session_factory, ping
from service.db.filters import InspectionFilter
from service.db.inspections import (
    InspectionPage,
    find_inspection,
    frame_inspection_id,
    get_inspection,
    insert_inspection,
    list_inspections,
    new_inspection,
)
from service.db.keyset import InvalidCursor
from service.db.models import Base, Defect, Inspection
from service.db.values import InspectionValues

__all__ = [
    "Base",
    "Defect",
    "Inspection",
    "InspectionFilter",
    "InspectionPage",
    "InspectionValues",
    "InvalidCursor",
    "find_inspection",
    "frame_inspection_id",
    "get_inspection",
    "insert_inspection",
    "list_inspections",
    "make_engine",
    "make_session_factory",
    "new_inspection",
    "ping",
]
