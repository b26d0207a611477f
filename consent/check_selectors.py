"""Old import path, kept while retention/ imports it: use consent.decisions.selectors."""

from consent.decisions.selectors import records_of_processing_register

__all__ = ["records_of_processing_register"]
