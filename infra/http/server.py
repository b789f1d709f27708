"""``mappa serve``: the HTTP service under uvicorn, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import structlog

from infra.bootstrap import ProjectionsBehind, bootstrap
from infra.settings import Settings

log = structlog.get_logger("mappa.http")


def serve(settings: Settings, host: str, port: int) -> None:
    """Open the store (refusing a wrong key), bring embedded views up to date, and serve
    until interrupted."""
    import uvicorn

    from consumers.runtime import Shutdown
    from infra.http.app import create_app

    tracker = bootstrap(settings)
    try:
        app = create_app(tracker)
        if not settings.kafka_bootstrap:
            try:
                tracker.catch_up()
            except ProjectionsBehind as behind:
                # The service still starts: the views that are up to date answer, and a view
                # left behind by a fact it could not take must not keep the rest offline.
                log.error("serving with views behind", behind=sorted(behind.failures))
        log.info("serving", host=host, port=port, embedded=not settings.kafka_bootstrap)
        # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again
        # with the handlers it found at start; ours makes that a normal return, so that
        # the tracker is closed and the command exits 0, as every long-running one does.
        Shutdown().install()
        # uvicorn's access log would print paths and queries (references in them); the
        # service logs one line per request itself, by route template.
        # ``proxy_headers=False``: uvicorn would otherwise take the client's address from
        # X-Forwarded-For when the request comes from 127.0.0.1, so any local client could
        # name a new address at each request and escape the per-address rate on guesses.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="info",
                    proxy_headers=False)  # fmt: skip
    finally:
        tracker.close()
