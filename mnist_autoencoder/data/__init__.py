"""The data: datasets and where they come from, their files, splits, snapshots and new images.

``catalog`` lists the datasets; ``download`` fetches and verifies their IDX files,
which ``idx`` parses; ``preprocessing`` normalises and splits them and ``splits``
reads the result back. A dataset grows in ``snapshots`` as ``ingestion`` adds
batches. ``inputs`` reads new images in every accepted format, chunk by chunk,
and ``pixels`` validates them. Nothing here imports TensorFlow.
"""
