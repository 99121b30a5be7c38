"""The demos: each runs stages end to end on the bundled data (`fidan demo`, `fidan demo adapt`, `fidan demo classify`)."""
