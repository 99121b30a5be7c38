"""Turkish text classification: labelled data, classifiers (transformers encoders, fidan backbones, a small
transformer from scratch, TF-IDF), training through the one trainer, metrics, search and prediction."""
