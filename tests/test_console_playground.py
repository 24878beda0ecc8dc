"""The console's playground against real models: the session's trained classifier (through
the console and through a real `verticalize serve` with an API key), a NER tagger, and a
small generation model whose chat streams token by token."""

from __future__ import annotations

import html
import json
import re
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from conftest import write
from console_util import client, free_port, running_console
from serve_support import live_server, ner_folder, settings, smollm_folder

from verticalize import api
from verticalize.serve.security import add_key
from verticalize.web.playground_view import ner_segments

TEXT = 'It worked, but <b>the "headaches"</b> & nausea were awful'
NER_TEXT = "Anna <flew> to Paris & met Bob Smith in London"
QUESTION = "What is the capital of France?"
TOKENS = 8


@pytest.fixture(scope="module")
def site(console_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A console over: `reviews` (the session's trained run, read in place), `tags` (a NER
    tagger), `chat` (SmolLM2-135M-Instruct as a run's model) and `fresh` (not trained)."""
    import torch

    root = tmp_path_factory.mktemp("playground")
    run = console_root / "reviews" / "runs" / "reviews"
    config = (console_root / "reviews" / "verticalize.yaml").read_text("utf-8")
    write(root / "reviews" / "verticalize.yaml", config + f"run_dir: '{run}'\n")
    ner_yaml = "name: {0}\ntask: ner\ndata:\n  sources:\n    - path: data.jsonl\n"
    for name in ("tags", "fresh"):
        write(root / name / "verticalize.yaml", ner_yaml.format(name))
        write(root / name / "data.jsonl", '{"text": "Anna in Paris", "spans": [[0, 4, "PER"]]}\n')
    torch.manual_seed(0)
    tagger = root / "tags" / "runs" / "tags" / "model"
    tagger.parent.mkdir(parents=True)
    tagger.symlink_to(ner_folder(), target_is_directory=True)
    write(
        root / "chat" / "verticalize.yaml",
        "name: chat\ntask: generation\nmodel: {base: SmolLM2-135M-Instruct}\n"
        "data:\n  sources:\n    - {path: data.jsonl, chat: messages}\n",
    )
    write(root / "chat" / "data.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n')
    (root / "chat" / "runs" / "chat").mkdir(parents=True)
    (root / "chat" / "runs" / "chat" / "model").symlink_to(smollm_folder())
    with running_console(root) as url:
        yield url, run


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("playground-keys") / "api-keys"
    return path, add_key(path, "playground")


def scores_of(page: str) -> list[tuple[str, float]]:
    return [
        (html.unescape(k), float(v))
        for k, v in re.findall(r'data-label="([^"]*)" data-score="([^"]*)"', page)
    ]


def events_of(response: httpx.Response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def test_pages_list_the_trained_models_and_say_when_there_is_none(site):
    with closing(client(site[0])) as c:
        page = c.get("/playground").text
        links = re.findall(r'class="try-link" href="/try/([^"]+)">[^<]*</a></td><td>(\w+)', page)
        assert links == [("chat", "generation"), ("reviews", "classification"), ("tags", "ner")]
        assert 'id="remote-key" name="key" type="password" autocomplete="off"' in page
        assert 'id="try-form"' in c.get("/try/reviews").text
        assert 'id="chat-form"' in c.get("/try/chat").text
        fresh = c.get("/try/fresh")
        assert fresh.status_code == 200 and 'id="try-none"' in fresh.text
        refused = c.post("/try/predict/fresh", data={"text": "Anna"})
        assert refused.status_code == 409 and "no trained model" in refused.text
        empty = c.post("/try/predict/reviews", data={"text": "  "})
        assert empty.status_code == 422 and "text: it is empty" in empty.text


def test_classification_shows_every_label_as_api_predict_scores_it(site):
    url, run = site
    with closing(client(url)) as c:
        page = c.post("/try/predict/reviews", data={"text": TEXT})
    assert page.status_code == 200, page.text
    [expected] = api.predict(run / "model", [TEXT])
    rows = scores_of(page.text)
    assert dict(rows) == expected["probs"] and len(rows) == 3
    assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
    assert f'class="predicted-label">{expected["label"]}<' in page.text
    best = max(expected["probs"].values())
    assert f'class="bar" style="width: {best * 100:.1f}%"' in page.text
    assert "<b>" not in page.text


def test_ner_highlights_the_predicted_spans_with_the_text_escaped(site):
    with closing(client(site[0])) as c:
        page = c.post("/try/predict/tags", data={"text": NER_TEXT})
    assert page.status_code == 200, page.text
    [expected] = api.predict(ner_folder(), [NER_TEXT])
    assert expected["entities"]  # a random head tags something in ten words
    marks = re.findall(r'<mark class="ent" data-type="([^"]+)"[^>]*>(.*?)<small>', page.text)
    assert [(t, html.unescape(s)) for t, s in marks] == [
        (e["type"], NER_TEXT[e["start"] : e["end"]]) for e in expected["entities"]
    ]
    shown = re.search(r'<p class="ner-text">(.*?)</p>', page.text, re.S).group(1)
    assert "<flew>" not in shown and "&lt;" in shown and "&amp;" in shown
    plain = html.unescape(re.sub(r"<small>.*?</small>|<[^>]+>", "", shown))
    assert plain == NER_TEXT  # every character once, in order


def test_ner_segments_skip_overlapping_and_out_of_range_spans():
    text = "Bob met Ann"
    spans = [
        {"start": 8, "end": 11, "type": "PER", "score": 0.9},
        {"start": 0, "end": 3, "type": "PER", "score": 0.8},
        {"start": 1, "end": 5, "type": "LOC"},  # overlaps Bob
        {"start": 9, "end": 40, "type": "LOC"},  # past the end
    ]
    pieces = ner_segments(text, spans)
    assert [(p["text"], p["type"]) for p in pieces] == [
        ("Bob", "PER"),
        (" met ", None),
        ("Ann", "PER"),
    ]


def test_remote_service_with_a_key_gives_the_same_labels_and_never_shows_the_key(
    site, keys, tmp_path
):
    url, run = site
    keys_file, key = keys
    serve = settings(tmp_path, api_keys_file=str(keys_file), runtime="torch")
    with live_server(run, serve) as (service, _), closing(client(url)) as c:
        page = c.post("/playground/remote", data={"url": service + "/", "key": key, "text": TEXT})
        wrong = c.post("/playground/remote", data={"url": service, "key": key + "x", "text": TEXT})
        missing = c.post("/playground/remote", data={"url": service, "text": TEXT})
    assert page.status_code == 200, page.text
    [expected] = api.predict(run / "model", [TEXT])
    rows = dict(scores_of(page.text))
    assert rows.keys() == expected["probs"].keys()
    assert rows == pytest.approx(expected["probs"], abs=2e-4)  # export/model = model/ merged
    assert f'class="predicted-label">{expected["label"]}<' in page.text
    for answer in (wrong, missing):
        assert answer.status_code == 401 and "check the API key" in answer.text
    for answer in (page, wrong, missing):
        assert key not in answer.text and key[3:20] not in answer.text


def test_bad_or_unreachable_urls_are_a_clear_4xx_without_the_key(site, keys):
    key = keys[1]
    closed = f"http://127.0.0.1:{free_port()}"
    with closing(client(site[0])) as c:
        for bad, status, words in [
            ("ftp://example.org", 422, "is not an http(s) URL"),
            ("127.0.0.1:8000", 422, "is not an http(s) URL"),
            (f"http://user:{key}@127.0.0.1:1", 422, "user name or password"),
            (closed, 400, f"cannot reach {closed}"),
        ]:
            r = c.post("/playground/remote", data={"url": bad, "key": key, "text": "hi"})
            assert r.status_code == status and words in r.text and "url:" in r.text, r.text
            assert key not in r.text


def test_generation_streams_the_chat_locally_and_from_a_service(site, keys, tmp_path):
    url, _ = site
    keys_file, key = keys
    form = {"text": QUESTION, "max_tokens": str(TOKENS), "temperature": "0"}
    serve = settings(tmp_path, api_keys_file=str(keys_file), max_new_tokens=TOKENS)
    with closing(client(url)) as c, live_server(smollm_folder(), serve) as (service, app):
        with c.stream("POST", "/try/chat/chat", data=form) as local:
            assert local.headers["content-type"].startswith("text/event-stream")
            local_events = events_of(local)
        remote_form = form | {"url": service, "key": key}
        with c.stream("POST", "/playground/remote", data=remote_form) as remote:
            remote_events = events_of(remote)
        later = form | {"messages": json.dumps([{"role": "user", "content": "Hi"}] * 2)}
        with c.stream("POST", "/try/chat/chat", data=later) as second:
            assert events_of(second)[-1].get("done")
        bad = c.post("/try/chat/chat", data=form | {"messages": '[{"role": "robot"}]'})
        wrong_task = c.post("/try/chat/reviews", data=form)
        engine = app.state.serve.router.champion.engine
        expected = greedy_answer(engine.model, engine.tokenizer, QUESTION)
    deltas = [e["delta"] for e in local_events if "delta" in e]
    assert len(deltas) >= 3  # token by token, not one block
    assert "".join(deltas) == expected and local_events[-1]["done"] is True
    assert "".join(e.get("delta", "") for e in remote_events) == expected
    assert remote_events[-1]["done"] is True and key not in json.dumps(remote_events)
    assert bad.status_code == 422 and "messages[0]" in bad.text
    assert wrong_task.status_code == 422 and "classification model" in wrong_task.text


def greedy_answer(model, tokenizer, question: str) -> str:
    """The model's own greedy continuation of the question in its chat template."""
    import torch

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=TOKENS, do_sample=False)[0, ids.shape[1] :]
    return tokenizer.decode(out, skip_special_tokens=True)
