"""Finetune: backbone + head trained end to end from the images, the optional alternative to
heads on stored features. It sits above both sides it joins: the image side (`extract`: the
backbone, its checkpoint, preprocessing, image input) and the heads (reached only through
`heads.methods`, `heads.inputs`, `heads.network` and `heads.predictions`). `finetune.train`
trains the [finetune] grid and writes its runs in the heads' `predictions.h5` format;
`finetune.final` writes the final model's directory through `model.directory` (and reads
[model] as `model.final` does)."""
