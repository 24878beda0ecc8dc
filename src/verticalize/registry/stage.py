"""Registry stage entry point: the run's exported model becomes a registered version
(champion, or challenger promoted when it beats the champion by registry.margin on the same
test set); registry/manifest.json in the run folder records the outcome."""

from __future__ import annotations

from verticalize.config import Config
from verticalize.errors import RegistryError
from verticalize.mlflow_store import tracking_uri
from verticalize.registry.promote import promote
from verticalize.registry.register import register
from verticalize.runfolder import RunFolder, StageResult


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    """Register (and maybe promote); registering the same training twice gives the same
    version, so the step always runs and `force` changes nothing. The manifest's `entry` is
    what `verticalize register` prints."""
    uri = tracking_uri(cfg, folder.root.parent)
    entry = register(cfg, folder)
    if entry.get("alias") == "challenger":
        try:
            entry["promotion"] = promote(
                entry["name"], uri, cfg.registry.metric, cfg.registry.margin
            )
        except RegistryError as e:
            entry["promotion"] = {"promoted": False, "reason": str(e)}
    entry["tracking_uri"] = uri
    manifest = folder.write_manifest(
        "registry", {"in": 1, "out": 1, "dropped": {}, "complete": True, "entry": entry}
    )
    return StageResult("registry", skipped=False, manifest=manifest, outputs={"uri": uri})
