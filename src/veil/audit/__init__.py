"""The audit of a run: the ``DST/.veil`` layout, the per-instance row schema, the Parquet and Zarr writers and
readers, the sealed before-thumbnails and the one tally type."""
