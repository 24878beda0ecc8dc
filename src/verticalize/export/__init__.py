"""Export stage: the run's model as a publishable folder — Hugging Face files, model card,
verticalize.json, and for classification ONNX + INT8 checked against the original (X1, X2)."""
