"""The image side: Slim backbones, checkpoints, preprocessing, feature extraction, demo pretraining."""
