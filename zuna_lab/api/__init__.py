"""The library's entry points: load_model (loading), the model cache, embed / reconstruct / to_raw (core)."""
