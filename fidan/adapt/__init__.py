"""Adapting existing models to Turkish: transformers export and import, vocabulary extension, LoRA."""
