"""Data stage: ingest → clean → deduplicate → split, each step accounted for."""
