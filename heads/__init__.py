"""Heads on stored features: the method registry (`methods`), a run's inputs (`inputs`), the
losses, the head and optimisers shared with finetune (`network`), the stack (`models`), the
trainer, and the predictions store (`predictions`) that finetune and analysis read."""
