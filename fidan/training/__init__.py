"""Training stage: pretraining (and later instruction tuning) with exact resume."""
