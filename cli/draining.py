"""uvicorn's server with a drain before it stops (imported by `run_server` when a server starts).

uvicorn alone, on SIGTERM, closes its listening socket at once and gives requests in flight
`timeout_graceful_shutdown`: a load balancer learns of it from refused connections, and its
health check of /readyz never sees a 503. Here the first SIGTERM (or SIGINT) starts the app's
drain instead (`registry.api.observe.Drain`): the socket stays open, /readyz answers 503 and new
requests 503 + Connection: close, requests in flight run on. The server then stops as uvicorn
would, once none is left or ADAPTERS_SHUTDOWN_DEADLINE_S has passed; a second signal stops it
at once.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from registry.api.observe import Drain

log = logging.getLogger("registry.api")
AFTER_DRAIN_S = 1
"""uvicorn's timeout_graceful_shutdown once the drain ended: what still runs then is cancelled."""


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain | None) -> None:
        super().__init__(config)
        self.drain = drain
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal handler: sets state only (logging here could deadlock on a handler's lock)."""
        if self.drain is not None and not self.should_exit and self.drain.begin():
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        drain = self.drain
        if drain is None or not drain.draining:
            return False
        if not self._announced:
            self._announced = True
            log.warning(
                "draining: /readyz answers 503, new requests are refused; %d in flight, stopping "
                "when they end or in %g s (ADAPTERS_SHUTDOWN_DEADLINE_S)",
                drain.in_flight,
                drain.deadline_s,
            )
        if drain.done():
            if drain.in_flight > 0:
                log.warning("drain deadline passed with %d requests in flight: stopping", drain.in_flight)
            return True
        return False
