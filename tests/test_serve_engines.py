"""The pieces under the routes: the shared classifier path (predict and serve) with its
length-chunked batches, embeddings pooling, stop strings while streaming, version labels."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from serve_support import LABELS, classifier_folder

from verticalize.models.text_batches import length_chunks
from verticalize.predict import load_predictor
from verticalize.serve.engines import folder_version, mean_pool
from verticalize.serve.generation import StopScanner, cut_at_stop
from verticalize.tasks.classification.encode import predict_records
from verticalize.tasks.classification.serving import ClassificationEngine, Classifier


def test_length_chunks_cover_every_text_once_in_length_order():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(50)]
    chunks = length_chunks(lengths, max_chunk=16)
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(50))
    assert all(1 <= len(c) <= 16 for c in chunks)
    widths = [[lengths[i] for i in c] for c in chunks]
    assert all(w == sorted(w) for w in widths)
    # chunks follow length order
    assert all(a[-1] <= b[0] for a, b in zip(widths, widths[1:], strict=False))
    # short texts are not padded to the longest one: far fewer padded tokens than one pass
    padded = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
    assert padded < 0.8 * 50 * max(lengths)
    assert length_chunks([7] * 10, 16) == [list(range(10))]  # equal lengths: one pass
    assert length_chunks([], 16) == []


def test_the_classifier_gives_the_probabilities_of_the_training_path():
    texts = ["ok", "this medicine gave me a terrible headache for days", "fine", "good " * 30]
    classifier = Classifier(classifier_folder(), batch_size=2)
    chunked = classifier.probabilities(texts)
    n = classifier.tokenizer.model_max_length
    records = [{"text": t} for t in texts]
    reference, _ = predict_records(
        classifier.model, classifier.tokenizer, records, LABELS, n, len(texts)
    )
    np.testing.assert_allclose(chunked, reference, atol=1e-5)
    results = load_predictor(classifier_folder())(texts)
    assert [r["label"] for r in results] == [LABELS[i] for i in reference.argmax(axis=1)]


def test_engine_embeddings_ignore_padding_and_are_unit_length():
    engine = ClassificationEngine(classifier_folder())
    texts = ["a", "a much longer sentence about side effects of a drug", "a"]
    vectors = engine.run_batch(("embed",), texts)
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))  # the masked position is ignored
    assert pooled.tolist() == [[1.0, 0.0]]


def test_stop_strings_are_held_back_until_they_cannot_match():
    scanner = StopScanner(["###", "END"])
    out = [scanner.feed(p) for p in ["Hello #", "# wor", "ld E", "N", "D more"]]
    assert "".join(out) == "Hello ## world "
    assert out[0] == "Hello " and scanner.stopped and scanner.flush() == ""
    free = StopScanner(["zz"])
    assert free.feed("abz") == "ab" and free.flush() == "z"
    assert cut_at_stop("one two three", ["three", "two"]) == ("one ", True)
    assert cut_at_stop("abc", []) == ("abc", False)


def test_version_labels(tmp_path):
    run_model = tmp_path / "runs" / "triage" / "model"
    exported = tmp_path / "runs" / "triage" / "export" / "model"
    for folder in (run_model, exported, tmp_path / "my-model"):
        folder.mkdir(parents=True)
    assert folder_version(run_model) == folder_version(exported) == "triage"
    assert folder_version(tmp_path / "my-model") == "my-model"
    engine = ClassificationEngine(classifier_folder())
    assert engine.version == "minilm-cls" and engine.test_metric() == (None, None)
    (tmp_path / "versioned").mkdir()
    info = {"version": "triage-1a2b3c4d", "metric": "macro_f1", "metrics": {"macro_f1": 0.7}}
    (tmp_path / "versioned" / "verticalize.json").write_text(json.dumps(info))
    from verticalize.serve.engines import model_info

    assert model_info(tmp_path / "versioned")["version"] == "triage-1a2b3c4d"
