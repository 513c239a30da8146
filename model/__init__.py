"""After the study: the final model and what users do with it.

    fit        the final model: [model] method on every labelled row (and its out-of-fold models)
    directory  the model directory's contract: the one writer and reader of model.json
    predict    a model's probabilities and tags for new images or features
    suggest    the labels an annotation probably lacks, ranked for a person to check
    export     the model as a TensorFlow SavedModel

It uses the heads' public modules (`heads.trainer.fit_fold`, the registry, `heads.inputs`,
`heads.predictions`) and the image side's extraction (`extract.extraction`); finetune's final
model is written through `model.directory` too. Nothing below imports it."""
