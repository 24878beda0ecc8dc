"""`verticalize console`: the app on uvicorn, with the URL (and token) printed at start."""

from __future__ import annotations

from pathlib import Path

from verticalize.console import console
from verticalize.errors import ConfigError
from verticalize.web.security import console_token, is_loopback


def run_console(folder: Path, host: str, port: int, token_file: Path | None) -> None:
    import uvicorn

    from verticalize.web.app import create_app

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: not a folder. Fix: pass the folder that holds your projects "
            "(each a verticalize.yaml), e.g. `verticalize console .`."
        )
    token = console_token(host, token_file)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if token is not None and token_file is None:
        url += f"?token={token}"
    console.print(f"verticalize console for {folder.resolve()}: {url}")
    if not is_loopback(host):
        console.print("[yellow]off localhost: every page and API call needs the token[/yellow]")
    uvicorn.run(create_app(folder, token), host=host, port=port, log_level="warning")
