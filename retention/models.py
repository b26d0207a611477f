"""Retention policies, legal holds, purge runs and rights requests (to come)."""
