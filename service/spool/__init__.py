"""The durable local spool that keeps inspection results while the database cannot."""

from service.spool.recorder import ResultRecorder, ResultRefused, ResultsUnavailable
from service.spool.spool import Spool, SpoolUnavailable

__all__ = ["ResultRecorder", "ResultRefused", "ResultsUnavailable", "Spool", "SpoolUnavailable"]
