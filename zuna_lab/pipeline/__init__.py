"""The pipeline stages between a read recording and the model: masks, preprocessing, tokens, seams,
and the labelled results (xarray Datasets) built in one module."""
