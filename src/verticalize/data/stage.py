"""Data stage entry point (D1–D11): sources → ingest → rules → clean → desensitize →
segment → agreement → dedup (exact, near) → group-aware split → augment → contamination
check (test records sharing a long n-gram with train), files in run/data/.

It streams: pass 1 reads every source into a work file, pass 2 runs the per-record steps
(in-process or on Ray) and keeps only small per-record facts for dedup and the split, pass 3
writes each kept record to its split. Memory grows with the number of records (ids,
labels, hashes), not with the bytes of text.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

from verticalize.config import Config
from verticalize.data.clean import normalize_text
from verticalize.data.dedup import Deduplicator, text_key
from verticalize.data.engine import map_records
from verticalize.data.ingest import bad_record_error, iter_sources
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.data.outputs import SplitWriter, encrypt_outputs, resolve_path, run_key
from verticalize.data.pii import resolve_pii_paths
from verticalize.data.pii_custom import custom_detectors
from verticalize.data.pretrain_text import PretrainText, pretrain_prefixes
from verticalize.data.process import STEPS, RecordProcessor
from verticalize.data.report import DataStats, write_data_report
from verticalize.data.sources import file_digest
from verticalize.data.split import SPLITS, assign_splits
from verticalize.errors import DataError
from verticalize.plugins import get_task
from verticalize.runfolder import (
    RunFolder,
    StageResult,
    file_sha256,
    fingerprint,
    write_json_atomic,
)
from verticalize.source_paths import resolve


def data_fingerprint(cfg: Config) -> str:
    base = cfg.source_file.parent
    digests = [file_digest(resolve(s.path, s.format, base)) for s in cfg.data.sources]
    if cfg.data.pii.enabled:  # an edited dictionary of a custom PII kind means a re-run
        digests += [
            file_sha256(base / c.dictionary) if (base / c.dictionary).is_file() else None
            for c in cfg.data.pii.custom
            if c.dictionary
        ]
    if cfg.data.contamination.enabled:  # an edited benchmark file means a re-check
        digests += [file_digest(resolve(p, None, base)) for p in cfg.data.contamination.benchmarks]
    reads = get_task(cfg.task).data_sections(cfg)  # e.g. how the task parses its labels
    return fingerprint(cfg.data.model_dump(mode="json"), cfg.seed, cfg.task, digests, *reads)


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    fp = data_fingerprint(cfg)
    if not force and folder.is_current("data", fp):
        return StageResult("data", skipped=True, manifest=folder.read_manifest("data"))
    started = time.perf_counter()
    out_dir = folder.stage_dir("data")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".work"  # holds raw text: always removed, also when the run fails
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        return _run(cfg, folder, out_dir, work, fp, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(cfg: Config, folder: RunFolder, out_dir: Path, work: Path, fp: str, started: float):
    base = cfg.source_file.parent
    d = cfg.data.model_copy(update={"pii": resolve_pii_paths(cfg.data.pii, base)})
    if d.pii.enabled:
        custom_detectors(d.pii.custom)  # a missing dictionary stops here, not in a worker
    key = run_key(cfg, folder.root)
    processor = RecordProcessor(
        d,
        d.labels,
        key,
        None,
        [str(resolve_path(p, base)) for p in d.segment.user_dicts],
        str(resolve_path(d.segment.stop_words, base)) if d.segment.stop_words else None,
    )
    provenance: list[dict] = []
    before = DataStats()
    with open(out_dir / "quarantine.jsonl", "w", encoding="utf-8") as qfh:
        quarantine = Quarantine(qfh, processor.scrub if d.pii.enabled else None)
        # pass 1: every source into one work file (boilerplate lines are counted on the way)
        t_ingest = StepTally("ingest")
        detector = _boilerplate_detector(d)
        with open(work / "ingested.jsonl", "w", encoding="utf-8") as fh:
            records = iter_sources(
                d, base, cfg.seed, t_ingest, quarantine, provenance, cfg.task, cfg.task_section()
            )
            for rec in records:
                before.add(rec)
                if detector is not None and "spans" not in rec:  # lines as pass 2 will see them
                    detector.observe(normalize_text(rec["text"], d.clean))
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if detector is not None:
            detector.finish(t_ingest.n_out)
            processor.boilerplate = detector
        # pass 2: per-record steps, then agreement and dedup bookkeeping on the driver
        tallies = {s: StepTally(s) for s in (*STEPS, "agreement", "labels")}
        reviewed = tuple(f"s{i}:" for i, s in enumerate(d.sources) if s.reviewed)
        dedup = Deduplicator(d.dedup.exact, d.dedup.near, reviewed)
        t_exact, t_near = StepTally("dedup_exact"), StepTally("dedup_near")
        pii_counts: Counter = Counter()
        vault: dict[str, bytes] = {}
        items: dict[str, dict] = {}
        annotated: list[dict] = []
        kept_facts: list[tuple[str, str | None]] = []  # (id, label) of each kept record
        entity_types: set[str] = set()  # NER: the span types of the kept records
        plugin = get_task(cfg.task)
        aside = pretrain_prefixes(cfg)  # an encoder task's masked-LM text: not in the splits
        pretrain = PretrainText(work, d.dedup.exact) if aside else None

        def keep(rec: dict, sig, key_, fh) -> None:
            hit = dedup.offer(rec, sig, key_)
            reason = hit[0] if hit else None
            for tally, what, drops in (
                (t_exact, "an exact copy", reason not in (None, "near_duplicate")),
                (t_near, "a near-duplicate", reason == "near_duplicate"),
            ):
                tally.n_in += 1
                if drops:
                    detail = f"{what} of {hit[1]}"
                    quarantine.put(tally, reason, rec, field="text", value=hit[1], detail=detail)
                    return
                tally.n_out += 1
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if plugin.split_group is not None and (unit := plugin.split_group(rec)):
                dedup.union(rec["id"], f"split_group:{unit}")
            kept_facts.append((rec["id"], split_class(rec)))
            entity_types.update(s[2] for s in rec.get("spans") or [])

        with open(work / "clean.jsonl", "w", encoding="utf-8") as fh:
            for out in map_records(processor, work / "ingested.jsonl", d):
                failed = out.dropped["step"] if out.dropped else None
                if failed and d.on_bad_record == "error":
                    x = out.dropped
                    where = {"source": out.record.get("source"), "line": out.record.get("line")}
                    raise bad_record_error(
                        where,
                        x["reason"],
                        x["field"],
                        x["value"],
                        x["detail"],
                        "correct the record, or relax data.rules",
                    )
                for step in STEPS:
                    tallies[step].n_in += 1
                    if step == failed:
                        quarantine.put(
                            tallies[step],
                            out.dropped["reason"],
                            out.record,
                            **{k: v for k, v in out.dropped.items() if k not in ("step", "reason")},
                        )
                        break
                    tallies[step].n_out += 1
                if failed:
                    continue
                pii_counts.update(out.pii)
                vault.update(out.vault)
                rec = out.record
                tallies["agreement"].n_in += 1
                if "item" in rec:  # one row per (item, annotator): merged into one record
                    merged = items.setdefault(rec["item"], {**rec, "annotations": []})
                    if merged is not rec and merged["id"] != rec["id"]:
                        tallies["agreement"].dropped["merged_into_item"] += 1
                    merged["annotations"] += rec["annotations"]
                    continue
                rec = _resolve(rec, annotated, tallies["agreement"], quarantine)
                if rec is not None and aside and rec["id"].startswith(aside):
                    pretrain.offer(rec, quarantine)
                elif rec is not None and _has_label(rec, cfg, tallies["labels"], quarantine):
                    keep(rec, out.signature, out.text_key, fh)
            for rec in items.values():
                rec = _resolve(rec, annotated, tallies["agreement"], quarantine)
                if rec is not None and _has_label(rec, cfg, tallies["labels"], quarantine):
                    keep(rec, None, None, fh)
        # pass 3: conflicts settled, split assigned, records written (and train augmented)
        conflicted = dedup.conflicted()
        t_conflicts = StepTally("dedup_conflicts", n_in=len(kept_facts))
        labels = d.labels or (list(d.label_bins) if d.label_bins else None)
        superseded = dedup.superseded - conflicted
        facts = [f for f in kept_facts if f[0] not in conflicted | superseded]
        labels = labels or sorted({str(f[1]) for f in facts if f[1] is not None})
        if plugin.labels_of is not None:
            labels = plugin.labels_of(labels, entity_types)
        if plugin.target == "spans":
            if not labels:
                raise DataError(
                    f"{cfg.source_file}: no record has an entity span, so there is nothing to "
                    f"learn. Fix: check data.sources[].spans / format and {out_dir / 'quarantine.jsonl'}."
                )
        _check_classes(cfg, facts, out_dir)
        strata = plugin.stratify_key or (lambda label: label)
        split_of, fold_of = assign_splits(
            [(rid, strata(lab), dedup.find(rid)) for rid, lab in facts], d.split, cfg.seed
        )
        if not {"train", "test"} <= set(split_of.values()):
            raise DataError(
                f"{cfg.source_file}: only {len(facts)} usable records; the train or test split "
                "is empty. Fix: add data, or lower data.split.test / data.split.validation."
            )
        set_aside = dict.fromkeys(
            conflicted, ("conflicting_labels", "an exact copy carries another label")
        ) | dict.fromkeys(
            superseded,
            ("superseded_by_review", "a reviewed source holds this text with the expert's label"),
        )
        after = DataStats()
        writer = SplitWriter(out_dir, cfg, base, processor, split_of, fold_of, after)
        held_out: dict[str, tuple[str, str]] = {}  # text key -> (split, id), for pretrain text
        with open(work / "clean.jsonl", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if (why := set_aside.get(rec["id"])) is not None:
                    quarantine.put(
                        t_conflicts,
                        why[0],
                        processor.scrub(rec),
                        field="label",
                        value=rec["label"],
                        detail=why[1],
                    )
                    continue
                t_conflicts.n_out += 1
                writer.write(rec)
                if pretrain is not None and (split := split_of[rec["id"]]) != "train":
                    held_out.setdefault(text_key(rec["text"]), (split, rec["id"]))
        t_augment = writer.close()
        n_pretrain = pretrain.write(out_dir, held_out, quarantine) if pretrain else 0
    steps = [t_ingest, *tallies.values(), t_exact, t_near, t_conflicts]
    enabled = {
        "pii": d.pii.enabled,
        "segment": d.segment.enabled,
        "agreement": bool(annotated) or bool(items),
        "dedup_exact": d.dedup.exact,
        "dedup_near": d.dedup.near.enabled,
        "dedup_conflicts": d.dedup.exact,
    }
    steps = [t for t in steps if enabled.get(t.step, True)]
    if t_augment is not None:
        steps.append(t_augment)
    if pretrain is not None:
        steps.append(pretrain.tally)
    dropped: Counter = Counter()
    for t in steps:
        dropped.update(t.dropped)
    write_json_atomic(out_dir / "splits.json", writer.manifest())
    with open(out_dir / "dedup_clusters.jsonl", "w", encoding="utf-8") as fh:
        for row in dedup.cluster_rows():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    extras = _extras(cfg, out_dir, annotated, pii_counts, vault, writer, dedup)
    if d.contamination.enabled:
        from verticalize.data.contamination import check_contamination

        shown = not {"train", "test"} & set(d.sensitive)  # no text of an encrypted split
        extras["contamination"] = check_contamination(
            out_dir, d.contamination, d.clean, base, shown, work
        )
    encrypt_outputs(cfg, out_dir, key)
    manifest = {
        "name": cfg.name,
        "in": t_ingest.n_in + t_ingest.added,  # rows read, plus records templates made
        "rows_read": t_ingest.n_in,
        "out": sum(writer.counts.values()) + n_pretrain,
        "dropped": dict(dropped),
        "steps": [t.as_dict() for t in steps],
        "labels": labels,
        "splits": dict(writer.counts),
        "label_counts": {s: dict(writer.label_counts[s]) for s in SPLITS},
        "augmented": {"train": t_augment.added} if t_augment is not None else {},
        **({"pretrain": {"file": "pretrain.jsonl", "records": n_pretrain}} if aside else {}),
        "split_config": {**d.split.model_dump(), "seed": cfg.seed},
        "sources": provenance,
        "quarantined": quarantine.count,
        "engine": d.engine,
        **extras,
        "seconds": round(time.perf_counter() - started, 2),
        "fingerprint": fp,
        "complete": True,
    }
    write_data_report(manifest, before.as_dict(), after.as_dict(), out_dir / "report.html")
    manifest = folder.write_manifest("data", manifest)
    outputs = {n: str(out_dir / f"{n}.jsonl") for n in SPLITS}
    if aside:
        outputs["pretrain"] = str(out_dir / "pretrain.jsonl")
    return StageResult("data", skipped=False, manifest=manifest, outputs=outputs)


def _boilerplate_detector(d):
    if not d.clean.boilerplate.enabled:
        return None
    from verticalize.data.clean import BoilerplateDetector

    return BoilerplateDetector(d.clean.boilerplate)


def _resolve(rec: dict, annotated: list, tally: StepTally, quarantine: Quarantine) -> dict | None:
    """Several annotators' labels → one (the majority); a tie is quarantined."""
    if rec.get("annotations"):
        from verticalize.data.agreement import resolve_label

        annotated.append({"id": rec["id"], "annotations": rec["annotations"]})
        label, reason = resolve_label(rec["annotations"])
        if reason:
            quarantine.put(
                tally,
                reason,
                rec,
                field="annotations",
                value=[a["label"] for a in rec["annotations"]],
                detail="annotators disagree with no majority; send it to review",
            )
            return None
        rec = {**rec, "label": label}
    tally.n_out += 1
    return rec


def split_class(rec: dict) -> str | None:
    """What stratified splitting balances: the label, or for NER the record's most frequent
    entity type ("none" without entities)."""
    if rec.get("spans") is None:
        return rec["label"]
    kinds = Counter(s[2] for s in rec["spans"])
    return max(sorted(kinds), key=kinds.__getitem__) if kinds else "none"


def _has_label(rec: dict, cfg: Config, tally: StepTally, quarantine: Quarantine) -> bool:
    tally.n_in += 1
    plugin = get_task(cfg.task)
    target = plugin.target
    missing = rec.get(target) is None if target == "spans" else rec.get(target) in (None, "")
    if target is not None and missing:
        reason = "missing_spans" if target == "spans" else f"missing_{target}"
        quarantine.put(tally, reason, rec, field=target, value=None, detail=plugin.target_detail)
        return False
    tally.n_out += 1
    return True


def _check_classes(cfg: Config, facts: list, out_dir: Path) -> None:
    seen = sorted({str(f[1]) for f in facts})
    need = get_task(cfg.task).min_classes
    if need and len(seen) < need:
        raise DataError(
            f"{cfg.source_file}: after curation {len(facts)} records with labels {seen} remain; "
            f"{cfg.task} needs at least {need} classes. Fix: check data.sources[].label and "
            f"{out_dir / 'quarantine.jsonl'}."
        )
    if len(facts) < 3:
        raise DataError(
            f"{cfg.source_file}: only {len(facts)} usable records; the train or test split would "
            "be empty. Fix: add data, or see why records were dropped in "
            f"{out_dir / 'quarantine.jsonl'}."
        )


def _extras(cfg, out_dir, annotated, pii_counts, vault, writer, dedup) -> dict:
    """Manifest sections for the optional steps (agreement, PII, dedup)."""
    d = cfg.data
    extras: dict = {
        "dedup": {
            "exact_clusters": len(dedup.exact_clusters),
            "near_clusters": len(dedup.near_clusters),
            "near": dedup.near_settings(),
        }
    }
    if annotated:
        from verticalize.data.agreement import agreement_report

        report = agreement_report(annotated, d.agreement, cfg.seed)
        write_json_atomic(out_dir / "agreement.json", report)
        extras["agreement"] = {
            "alpha": report["alpha"],
            "alpha_target": d.agreement.alpha_target,
            "n_items": len(annotated),
            "n_review": len(report["review"]),
        }
    if d.pii.enabled:
        pii = {"action": d.pii.action, "detections": dict(pii_counts)}
        if vault:
            from verticalize.data.crypto import write_vault

            write_vault(out_dir / "pii_vault.jsonl", vault)
            pii["vault"] = "pii_vault.jsonl"
        if d.pii.quasi_identifiers:
            pii["k_anonymity"] = writer.k_anonymity()
        extras["pii"] = pii
    return extras
