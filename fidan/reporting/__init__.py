"""Report stage: a run's report.md with plots, from its files (``fidan report``, ``fidan.report(...)``), and
`fidan compare`."""
