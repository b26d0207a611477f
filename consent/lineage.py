"""Old import path, kept while retention/ imports it: use consent.decisions.services."""

from consent.decisions.services import decisions_forget_subject

__all__ = ["decisions_forget_subject"]
