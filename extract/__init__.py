"""The image side: Slim backbones, checkpoints, preprocessing, feature extraction, demo
pretraining, and the optional end-to-end finetune (heads reached through `heads.methods`,
`heads.inputs`, `heads.network` and `heads.predictions` only)."""
