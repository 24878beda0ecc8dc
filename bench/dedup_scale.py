"""Memory and speed of the data stage's dedup (exact + near, D4) at a million records.

Records are built from the real corpora of bench/dedup_corpus.py: every real document of
>= --min-chars characters once, then edited copies of random ones (5-20% of the units
edited) until --n records; a record's label is its corpus. They are streamed, never held:
each goes through what the data stage does per record (`text_key`, the near-dup
`signature` with the config's default settings, `Deduplicator.offer`), in one process like
the stage's local engine.

Baseline, same run: the bytes per record of the LSH buckets alone, ours (`BandTable`) against
datasketch's in-memory MinHashLSH (what near dedup used before), both filled with the same
bands of the first --baseline-n records' signatures, measured with tracemalloc.

Reports peak RSS of this process (ru_maxrss: corpus pool, Deduplicator with its near-dup
index, interpreter), docs/s, how many records were dropped as exact / near duplicates, the
recall of planted copies (same cluster as their original), and RSS and rate at checkpoints.
Last stdout line: one JSON object; target: peak_rss_gb <= 4 at 1,000,000 records.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_corpus import EDIT_MAX, EDIT_MIN, edit, load_base, unit_pools  # noqa: E402

from verticalize.config.data import NearDedupConfig  # noqa: E402
from verticalize.data.band_table import BandTable  # noqa: E402
from verticalize.data.dedup import Deduplicator, text_key  # noqa: E402
from verticalize.data.near_dedup import (  # noqa: E402
    NearDupIndex,
    band_keys,
    configured,
    signature,
)


def _traced(build) -> int:
    tracemalloc.start()
    held = build()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return size


def bucket_bytes_per_record(sigs: list, settings: dict) -> dict:
    """Bytes per record of the LSH buckets: BandTable vs datasketch's MinHashLSH."""
    from datasketch import LeanMinHash, MinHashLSH

    index = NearDupIndex(settings, len(sigs[0].values))
    params = {s: index._bands[s] for s in settings}

    def ours():
        table = BandTable()
        for row, sig in enumerate(sigs):
            table.insert(band_keys(sig.values, *params[sig.script], index._salt[sig.script]), row)
        table._flush()  # frozen, as almost all of a big index is
        return table

    def datasketch():
        lsh = {s: MinHashLSH(num_perm=128, params=p) for s, p in params.items()}
        for row, sig in enumerate(sigs):
            lean = LeanMinHash(seed=1, hashvalues=sig.values[:128], scheme="affine32")
            lsh[sig.script].insert(row, lean, check_duplication=False)
        return lsh

    a, b = _traced(ours), _traced(datasketch)
    n = len(sigs)
    return {
        "records": n,
        "band_table_bytes_per_record": round(a / n),
        "datasketch_bytes_per_record": round(b / n),
        "ratio_datasketch_over_ours": round(b / a, 1),
    }


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def current_rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**30


def records(base: list[tuple[str, str]], n: int, rng: random.Random):
    """(id, lang, text, family) for every base doc, then edited copies up to n."""
    for i, (lang, text) in enumerate(base):
        yield f"b{i}", lang, text, i
    pools = unit_pools(base)
    for j in range(n - len(base)):
        i = rng.randrange(len(base))
        lang, text = base[i]
        yield f"p{j}", lang, edit(text, lang, rng.uniform(EDIT_MIN, EDIT_MAX), rng, pools[lang]), i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--min-chars", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=100_000, help="checkpoint interval")
    parser.add_argument("--baseline-n", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool, counts = load_base(args.min_chars)
    base = pool[: args.n]
    rss_pool = current_rss_gb()
    near = NearDedupConfig(enabled=True)
    settings = configured(near)
    dedup = Deduplicator(exact=True, near=near)
    dropped: Counter = Counter()
    family_rep: dict[int, str] = {}  # base doc index -> representative of its cluster
    hits = planted = 0
    checkpoints = []
    start = time.perf_counter()
    for k, (rid, lang, text, fam) in enumerate(records(base, args.n, rng), 1):
        rec = {"id": rid, "text": text, "label": lang}
        sig = signature(text, settings, near.num_perm)
        hit = dedup.offer(rec, sig, text_key(text))
        if hit is not None:
            dropped[hit[0]] += 1
        if rid.startswith("b"):
            family_rep[fam] = dedup.index.representative(rid) if rid in dedup.index else rid
        else:
            planted += 1
            rep = hit[1] if hit is not None else rid
            # the stage drops a near copy that joins its original's cluster
            hits += dedup.index.representative(rep) == family_rep[fam] if rep in dedup.index else 0
        if k % args.every == 0:
            elapsed = time.perf_counter() - start
            checkpoints.append(
                {
                    "records": k,
                    "rss_gb": round(current_rss_gb(), 2),
                    "docs_per_s": round(k / elapsed),
                }
            )
            print(json.dumps(checkpoints[-1]), file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    peak, frozen = rss_gb(), dedup.index._table.nbytes()
    del dedup
    sample = itertools.islice(records(base, args.n, random.Random(args.seed)), args.baseline_n)
    sigs = [signature(text, settings, near.num_perm) for _, _, text, _ in sample]
    out = {
        "records": args.n,
        "peak_rss_gb": round(peak, 2),
        "meets_target": peak <= 4.0,
        "rss_after_loading_corpus_gb": round(rss_pool, 2),
        "band_table_frozen_gb": round(frozen / 2**30, 2),
        "bucket_memory_baseline": bucket_bytes_per_record(sigs, settings),
        "docs_per_s": round(args.n / elapsed, 1),
        "wall_s": round(elapsed, 1),
        "real_docs": len(base),
        "planted_copies": planted,
        "planted_recall": round(hits / planted, 4) if planted else None,
        "dropped": dict(dropped),
        "settings": {s: vars(x) for s, x in settings.items()} | {"num_perm": near.num_perm},
        "pool_by_source": counts,
        "checkpoints": checkpoints,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
