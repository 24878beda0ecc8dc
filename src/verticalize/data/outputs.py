"""What the data stage writes and how later stages read it back: the split files (with
augmented copies in train), splits.json, encryption at rest of outputs marked sensitive,
and the run's secret key."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import IO

from verticalize.config import Config
from verticalize.data.manifest import StepTally
from verticalize.data.pii import equivalence_class, k_anonymity_of_classes
from verticalize.data.split import SPLITS
from verticalize.runfolder import read_jsonl

AUGMENT_CHUNK = 512  # train records augmented together (memory stays bounded)


def resolve_path(path: str, base: Path) -> Path:
    """A file named in the YAML: relative to it, or pkg:<module>/<file> inside a package."""
    from verticalize.source_paths import resolve

    return resolve(path, "lines", base).file


def run_key(cfg: Config, run_root: Path) -> bytes | None:
    """The secret key when pseudonyms or encryption need one; it must live outside the run."""
    d = cfg.data
    if not (d.sensitive or (d.pii.enabled and d.pii.action in ("pseudonym", "hash"))):
        return None
    from verticalize.data.crypto import load_or_create_key

    path = Path(d.key_file).expanduser() if d.key_file else _default_key_path(cfg)
    if not path.is_absolute():
        path = cfg.source_file.parent / path
    key, _created = load_or_create_key(path, run_root)
    return key


def _default_key_path(cfg: Config) -> Path:
    return Path("~/.config/verticalize/keys").expanduser() / f"{cfg.name}.key"


class SplitWriter:
    """Writes each kept record to its split file; train records are augmented in chunks."""

    def __init__(self, out_dir: Path, cfg: Config, base: Path, processor, split_of, fold_of, stats):
        self.cfg, self.split_of, self.fold_of, self.stats = cfg, split_of, fold_of, stats
        self.files: dict[str, IO[str]] = {
            s: open(out_dir / f"{s}.jsonl", "w", encoding="utf-8") for s in SPLITS
        }
        self.counts: Counter = Counter({s: 0 for s in SPLITS})
        self.label_counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
        self.qi_classes: Counter = Counter()
        self.augment = cfg.data.augment if cfg.data.augment.enabled else None
        self.pending: list[dict] = []
        self.tally = StepTally("augment") if self.augment else None
        self.failed: Counter = Counter()
        self.chunk = 0
        if self.augment:
            self._setup_augment(base, processor)

    def _setup_augment(self, base: Path, processor) -> None:
        from verticalize.data.augment import load_thesaurus
        from verticalize.data.segment import read_term_file

        a = self.augment
        self.thesaurus = load_thesaurus([resolve_path(p, base) for p in a.thesaurus])
        self.protected = {
            term
            for p in [*a.protect, *self.cfg.data.segment.user_dicts]
            for term, _freq in read_term_file(resolve_path(p, base))
        }
        self.segmenter = processor.segmenter

    def write(self, rec: dict) -> None:
        split = self.split_of[rec["id"]]
        if rec["id"] in self.fold_of:
            rec["fold"] = self.fold_of[rec["id"]]
        self._emit(split, rec)
        qis = self.cfg.data.pii.quasi_identifiers
        if qis:
            self.qi_classes[equivalence_class(rec.get("meta", {}), qis)] += 1
        if split == "train" and self.augment:
            self.pending.append(rec)
            if len(self.pending) >= AUGMENT_CHUNK:
                self._augment()

    def _emit(self, split: str, rec: dict) -> None:
        self.files[split].write(json.dumps(rec, ensure_ascii=False) + "\n")
        if not rec.get("augmented"):
            self.counts[split] += 1
            if rec.get("spans") is not None:  # NER: entities per type
                self.label_counts[split].update(s[2] for s in rec["spans"])
            else:
                self.label_counts[split][rec["label"]] += 1
            self.stats.add(rec)

    def _augment(self) -> None:
        from verticalize.data.augment import augment_records

        a, chosen = self.augment, self.pending
        self.tally.n_in += len(chosen)
        self.tally.n_out += len(chosen)
        result = augment_records(  # picks the seeded `share` of records itself
            chosen, a, self.cfg.seed + self.chunk, self.protected, self.segmenter, self.thesaurus
        )
        for rec in result.records:
            self._emit("train", rec)
        self.tally.added += len(result.records)
        self.tally.n_out += len(result.records)
        self.failed.update(result.failed)
        self.pending, self.chunk = [], self.chunk + 1

    def close(self) -> StepTally | None:
        if self.augment and self.pending:
            self._augment()
        for fh in self.files.values():
            fh.close()
        if self.tally is not None and self.failed:
            self.tally.step = f"augment (failed copies: {dict(self.failed)})"
        return self.tally

    def k_anonymity(self) -> dict:
        pii = self.cfg.data.pii
        return k_anonymity_of_classes(self.qi_classes, pii.quasi_identifiers, pii.k_anonymity)

    def manifest(self) -> dict:
        """splits.json: the exact membership of every split (and fold), reproducible by seed."""
        ids: dict[str, list[str]] = {s: [] for s in SPLITS}
        for rid, split in self.split_of.items():
            ids[split].append(rid)
        out = {
            "seed": self.cfg.seed,
            "config": self.cfg.data.split.model_dump(),
            "group_aware": True,
            "counts": dict(self.counts),
            "label_counts": {s: dict(c) for s, c in self.label_counts.items()},
            "sha256": {
                s: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest() for s, v in ids.items()
            },
            "ids": {s: sorted(v) for s, v in ids.items()},
        }
        if self.fold_of:
            folds: dict[int, list[str]] = {}
            for rid, k in self.fold_of.items():
                folds.setdefault(k, []).append(rid)
            out["folds"] = {str(k): sorted(v) for k, v in sorted(folds.items())}
        return out


def encrypt_outputs(cfg: Config, out_dir: Path, key: bytes | None) -> None:
    """Outputs listed in data.sensitive are replaced by AES-256-GCM `<name>.jsonl.enc`."""
    if not cfg.data.sensitive:
        return
    from verticalize.data.crypto import derive_key, encrypt_file

    for name in cfg.data.sensitive:
        plain = out_dir / f"{name}.jsonl"
        if not plain.is_file():  # pretrain.jsonl: only encoder tasks with pretrain sources
            continue
        encrypt_file(plain, out_dir / f"{name}.jsonl.enc", derive_key(key, "files"))
        plain.unlink()


def read_split(cfg: Config, run_root: Path, name: str) -> list[dict]:
    """A split written by the data stage, decrypted with the run's key when it is sensitive."""
    data_dir = run_root / "data"
    enc = data_dir / f"{name}.jsonl.enc"
    if enc.is_file():
        from verticalize.data.crypto import decrypt_lines, derive_key

        key = run_key(cfg, run_root)
        return [json.loads(x) for x in decrypt_lines(enc, derive_key(key, "files")) if x.strip()]
    return read_jsonl(data_dir / f"{name}.jsonl")


def reidentify_file(cfg: Config, run_root: Path, src: Path, dst: Path) -> Path:
    """Replace every pseudonym token in `src` by its original (JSONL stays valid JSON)."""
    from verticalize.data.crypto import read_vault
    from verticalize.data.pii import reidentify
    from verticalize.data.process import map_strings
    from verticalize.errors import DataError

    vault_path = run_root / "data" / "pii_vault.jsonl"
    if not vault_path.is_file():
        raise DataError(
            f"{vault_path}: no pseudonym vault. Fix: run the data stage with "
            "data.pii.action: pseudonym first (only pseudonyms can be reversed)."
        )
    if not src.is_file():
        raise DataError(f"{src}: file not found. Fix: give the file to restore.")
    vault, key = read_vault(vault_path), run_key(cfg, run_root)
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for line in fin:
            if src.suffix == ".jsonl" and line.strip():
                row = map_strings(json.loads(line), lambda s: reidentify(s, vault, key))
                fout.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                fout.write(reidentify(line, vault, key))
    return dst
