"""The durable local spool that keeps inspection results while the database cannot."""

from service.spool.recorder import ResultRecorder, ResultsUnavailable
from service.spool.spool import Spool, SpoolUnavailable

__all__ = ["ResultRecorder", "ResultsUnavailable", "Spool", "SpoolUnavailable"]
