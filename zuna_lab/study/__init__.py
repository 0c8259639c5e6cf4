"""Many recordings: embed_many / reconstruct_many (api), open_embeddings (reading), BIDS datasets
(bids), the store, the tasks and their placement on a dask.distributed cluster."""
from .api import embed_many, reconstruct_many
from .reading import open_embeddings

__all__ = ["embed_many", "open_embeddings", "reconstruct_many"]
