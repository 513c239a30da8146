"""The HDF5 feature store: resumable, sharded writing, merging and batched reading (see `store`)."""
