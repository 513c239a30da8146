"""The image side: Slim backbones, checkpoints, preprocessing, feature extraction and demo
pretraining. It imports no heads: heads (prediction from images) and finetune sit above it."""
