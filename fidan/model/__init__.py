"""The model: the GPT, its presets, vocabulary growth, and held-out scoring (bits per byte)."""
