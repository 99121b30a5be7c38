"""Report stage: a run's report.md with plots, from its files."""
