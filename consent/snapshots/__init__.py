"""Signed, expiring Parquet snapshots of one purpose's decisions, and usage uploads."""
