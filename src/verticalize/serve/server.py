"""Run the service: `serve(target, settings)` binds the port first (so "port in use" is said at
once), loads the model(s), then hands the bound socket to uvicorn. `BackgroundServer` runs
an app in a thread on a free port (tests, benchmarks, the console's playground)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time

from verticalize.config import Config, ServeConfig
from verticalize.errors import ServeError
from verticalize.serve.privacy import PII_FREE

log = logging.getLogger("verticalize.serve")


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0 = any free one); ServeError with the fix when
    the port is taken or the address is not this machine's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(
            f"serve.host: {host!r} is not an address ({e}). Fix: e.g. 127.0.0.1"
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"serve.port: {host}:{port} is already in use (another server is running?). "
                "Fix: stop it, or pass --port with a free port."
            ) from None
        raise ServeError(
            f"serve.host/port: cannot listen on {host}:{port} ({e.strerror}). Fix: use an "
            "address of this machine (127.0.0.1, or 0.0.0.0 for all) and a port >= 1024."
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app, settings: ServeConfig | None = None, log_level: str = "info"):
    import uvicorn

    settings = settings or ServeConfig()
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,  # the audit log has one line per request
        timeout_graceful_shutdown=30,  # in-flight requests finish on SIGTERM
        # connections beyond this get 503 from uvicorn: the model queues are bounded anyway
        limit_concurrency=settings.max_queue * 4 + 100,
    )


def serve(
    target: str,
    settings: ServeConfig,
    tracking_uri: str | None = None,
    project: Config | None = None,
) -> None:
    """Serve `target` (run folder, model folder or models:/name@alias) until stopped;
    `project` is the project's config when known (its data.pii masks feedback)."""
    import uvicorn

    from verticalize.serve.app import create_app

    sock = bind_socket(settings.host, settings.port)
    try:
        app = create_app(settings, target, tracking_uri, project)
        host, port = sock.getsockname()[:2]
        log.warning(
            "verticalize serve: http://%s:%s (docs at /docs)", host, port, extra={PII_FREE: True}
        )
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """`with BackgroundServer(app) as s:` serves `app` on 127.0.0.1 in a thread; `s.url`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.server = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        import uvicorn

        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(self.app, log_level=self.log_level))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn"
        )
        self.thread.start()
        while not self.server.started:  # startup (lifespan) runs in the thread
            if not self.thread.is_alive():
                raise ServeError(f"the server on port {self.port} stopped during startup")
            time.sleep(0.01)
        self._sock = sock
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Graceful stop: in-flight requests finish, then the lifespan shutdown runs."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=60)
            self._sock.close()
            self.server = None
