"""Many recordings: embed_many / reconstruct_many / open_embeddings (api), the store, the tasks and
their placement on a dask.distributed cluster."""
from .api import embed_many, open_embeddings, reconstruct_many

__all__ = ["embed_many", "open_embeddings", "reconstruct_many"]
