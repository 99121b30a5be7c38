"""The machine: devices, precision and peak FLOP/s, the environment, distributed setup, safe file writes, plots."""
