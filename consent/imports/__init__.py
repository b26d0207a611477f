"""Moving consent records in and out: imports of files from other tools (validated whole,
then applied in batches through the ledger's one write path) and exports of ledger events
as ISO/IEC TS 27560 records in W3C DPV JSON-LD, which the import reads back."""
