"""The consent ledger: the hash chain (chain), the one write path every writer takes
(write: lock -> build -> append, on the store its database gets: store_pg or store_orm),
consent expiry (expiry), the chain verifier (verify) and the guarded purge (purge).

The package exports the chain's functions; import the other parts from their modules.
"""

from consent.ledger.chain import (
    GENESIS,
    HASHED_COLUMNS,
    context_digest,
    event_hash,
    event_hash_of,
)

__all__ = ["GENESIS", "HASHED_COLUMNS", "context_digest", "event_hash", "event_hash_of"]
