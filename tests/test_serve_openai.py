"""The OpenAI-compatible routes against SmolLM2-135M-Instruct, driven by the real `openai`
client: chat and completions (plain and streamed), usage counts, stop strings, batched
generation with left padding, embeddings, models, and clear 400s for what is unsupported."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from serve_support import live_server, settings, smollm_folder

pytestmark = pytest.mark.slow  # loads a 135M-parameter model and generates

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gen_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    with live_server(smollm_folder(), settings(tmp, max_new_tokens=12)) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def client(gen_server):
    return openai.OpenAI(base_url=gen_server[0] + "/v1", api_key="unused", max_retries=0)


def test_chat_plain_and_streamed_give_the_same_greedy_answer(client, gen_server):
    plain = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=10, temperature=0
    )
    text = plain.choices[0].message.content
    assert "Paris" in text and plain.choices[0].finish_reason in ("stop", "length")
    tokenizer = gen_server[1].state.serve.router.champion.engine.tokenizer
    prompt = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert plain.usage.prompt_tokens == len(
        tokenizer(prompt, add_special_tokens=False)["input_ids"]
    )
    assert 0 < plain.usage.completion_tokens <= 10
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=QUESTION,
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == plain.choices[0].finish_reason and set(finishes[:-1]) == {None}
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_completions_plain_streamed_and_several_prompts(client):
    plain = client.completions.create(
        model="m", prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert plain.choices[0].finish_reason == "length" and plain.usage.completion_tokens == 6
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="m", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True
        )
    )
    assert streamed == plain.choices[0].text
    two = client.completions.create(
        model="m",
        prompt=["One plus one is", "The capital of France is"],
        max_tokens=6,
        temperature=0,
    )
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[1].text == plain.choices[0].text  # batched with left padding: same text


def test_max_tokens_is_capped_and_stop_strings_cut(client):
    capped = client.completions.create(
        model="m", prompt="Once upon a time", max_tokens=500, temperature=0
    )
    assert capped.usage.completion_tokens == 12  # serve.max_new_tokens
    counting = [{"role": "user", "content": "Count: one, two, three,"}]
    free = client.chat.completions.create(
        model="m", messages=counting, max_tokens=12, temperature=0
    )
    word = free.choices[0].message.content.split()[1].strip(",.")  # a word the model says
    cut = client.chat.completions.create(
        model="m", messages=counting, max_tokens=12, temperature=0, stop=[word]
    )
    assert word not in cut.choices[0].message.content
    assert free.choices[0].message.content.startswith(cut.choices[0].message.content)
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="m", messages=counting, max_tokens=12, temperature=0, stop=[word], stream=True
        )
        if c.choices
    )
    assert streamed == cut.choices[0].message.content


def test_sampling_settings_are_accepted_and_seeded(client):
    kwargs = {"model": "m", "messages": QUESTION, "max_tokens": 8, "temperature": 0.9, "top_p": 0.9}
    a = client.chat.completions.create(seed=7, **kwargs).choices[0].message.content
    b = client.chat.completions.create(seed=7, **kwargs).choices[0].message.content
    assert a == b


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 2}, "n"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_unsupported_options_are_a_clear_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=QUESTION, max_tokens=4, **extra)
    assert e.value.body["param"] == param and "not supported" in e.value.body["message"]


def test_a_too_long_prompt_and_bad_messages_are_400(client, gen_server):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="m", prompt="word " * 600, max_tokens=4)
    assert "512" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        )
    r = httpx.post(gen_server[0] + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages"


def test_models_and_embeddings_of_the_decoder(client):
    [model] = client.models.list().data
    assert model.owned_by == "verticalize"
    res = client.embeddings.create(model=model.id, input=["Paris", "Paris", "a bicycle"])
    vectors = np.array([d.embedding for d in res.data])
    assert vectors.shape == (3, 576)  # SmolLM2's hidden size
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-4)
    assert vectors[0] @ vectors[1] == pytest.approx(1, abs=1e-5) and vectors[0] @ vectors[2] < 0.999


def test_concurrent_chats_are_batched_and_match_one_by_one(client, gen_server):
    questions = ["What is 2+2?", "Name a color.", "What is the capital of Italy?"]

    def ask(q: str) -> str:
        messages = [{"role": "user", "content": q}]
        r = client.chat.completions.create(
            model="m", messages=messages, max_tokens=8, temperature=0
        )
        return r.choices[0].message.content

    alone = [ask(q) for q in questions]
    slot = gen_server[1].state.serve.router.champion
    entered, release, real = threading.Event(), threading.Event(), slot.batcher.run_batch
    three_waiting, on_depth = threading.Event(), slot.batcher.on_depth
    sizes: list[int] = []

    def depth_seen(depth: int) -> None:
        on_depth(depth)
        if depth == 3:
            three_waiting.set()

    def held(key, items):
        entered.set()
        release.wait(60)
        sizes.append(len(items))
        return real(key, items)

    slot.batcher.run_batch, slot.batcher.on_depth = held, depth_seen
    try:
        with ThreadPoolExecutor(4) as pool:
            blocker = pool.submit(ask, "Say hi.")
            assert entered.wait(60)
            futures = [pool.submit(ask, q) for q in questions]
            assert three_waiting.wait(60)
            release.set()
            together = [f.result() for f in futures]
            blocker.result()
    finally:
        slot.batcher.run_batch, slot.batcher.on_depth = real, on_depth
    assert sizes == [1, 3]
    assert together == alone
