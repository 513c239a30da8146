"""The image side: Slim backbones, checkpoints, preprocessing, feature extraction, pretrain, finetune."""
