"""Data stage entry point: sources → ingest → clean → dedup → split, files in run/data/."""

from __future__ import annotations

import time

from verticalize.config import Config
from verticalize.data.clean import clean
from verticalize.data.dedup import dedup_exact
from verticalize.data.ingest import ingest
from verticalize.data.manifest import Quarantine
from verticalize.data.sources import file_digest, resolve
from verticalize.data.split import SPLITS, label_counts, stratified_split
from verticalize.errors import DataError
from verticalize.runfolder import RunFolder, StageResult, fingerprint, write_jsonl


def data_fingerprint(cfg: Config) -> str:
    base = cfg.source_file.parent
    digests = [file_digest(resolve(s.path, s.format, base)) for s in cfg.data.sources]
    return fingerprint(cfg.data.model_dump(mode="json"), cfg.seed, digests)


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    fp = data_fingerprint(cfg)
    if not force and folder.is_current("data", fp):
        return StageResult("data", skipped=True, manifest=folder.read_manifest("data"))
    started = time.perf_counter()
    out_dir = folder.stage_dir("data")
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "quarantine.jsonl", "w", encoding="utf-8") as qfh:
        quarantine = Quarantine(qfh)
        records, t_ingest, provenance = ingest(
            cfg.data, cfg.source_file.parent, cfg.seed, quarantine
        )
        records, t_clean = clean(records, cfg.data.clean, quarantine)
        clusters = []
        steps = [t_ingest, t_clean]
        if cfg.data.dedup.exact:
            records, t_dedup, clusters = dedup_exact(records, quarantine)
            steps.append(t_dedup)
    write_jsonl(out_dir / "dedup_clusters.jsonl", clusters)
    labels = cfg.data.labels or (list(cfg.data.label_bins) if cfg.data.label_bins else None)
    labels = labels or sorted({r["label"] for r in records})
    if len(labels) < 2 or len({r["label"] for r in records}) < 2:
        raise DataError(
            f"{cfg.source_file}: after cleaning, {len(records)} records with labels "
            f"{sorted({r['label'] for r in records})} remain; classification needs at least two "
            f"classes. Fix: check data.sources[].label and {out_dir / 'quarantine.jsonl'}."
        )
    split = stratified_split(records, cfg.data.split, cfg.seed)
    for name in SPLITS:
        write_jsonl(out_dir / f"{name}.jsonl", split[name])
    if not split["train"] or not split["test"]:
        raise DataError(
            f"{cfg.source_file}: only {len(records)} usable records; the train or test split is "
            "empty. Fix: add data, or lower data.split.test / data.split.validation."
        )
    dropped: dict[str, int] = {}
    for t in steps:
        for reason, n in t.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    manifest = folder.write_manifest(
        "data",
        {
            "in": t_ingest.n_in,
            "out": sum(len(v) for v in split.values()),
            "dropped": dropped,
            "steps": [t.as_dict() for t in steps] + [_split_step(split, len(records))],
            "labels": labels,
            "splits": {name: len(split[name]) for name in SPLITS},
            "label_counts": label_counts(split),
            "split_config": {**cfg.data.split.model_dump(), "seed": cfg.seed},
            "sources": provenance,
            "quarantined": quarantine.count,
            "seconds": round(time.perf_counter() - started, 2),
            "fingerprint": fp,
            "complete": True,
        },
    )
    return StageResult(
        "data",
        skipped=False,
        manifest=manifest,
        outputs={n: str(out_dir / f"{n}.jsonl") for n in SPLITS},
    )


def _split_step(split: dict, n_in: int) -> dict:
    return {"step": "split", "in": n_in, "out": sum(len(v) for v in split.values()), "dropped": {}}
