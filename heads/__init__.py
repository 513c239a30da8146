"""Losses, head models and the batched multi-head trainer (see `trainer` for the outputs)."""
