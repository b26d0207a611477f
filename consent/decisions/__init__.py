"""Records of what was checked: data uses (records of processing), the Decision every bulk
or streamed check leaves, its lineage of allowed subjects, and drift against it."""
