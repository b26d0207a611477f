"""Restriction of processing (GDPR Art. 18): periods during which every check denies."""
