"""Generation stage: sampling text from trained models."""
