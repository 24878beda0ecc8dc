"""Base models (bundled, folder or hub id) and how they are adapted (full, freeze, LoRA)."""
