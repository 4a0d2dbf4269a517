"""Upload bodies: who may read one now, and how long a body may take.

Every route that reads a blob body (`PUT /v1/blobs`, the Hub's LFS PUTs and parts, a multipart
completion) runs it through `UploadSlots.run`:

- At most `upload_concurrency` bodies are read at once, each on a thread of the slots' own (a body
  that trickles never holds a thread every other route shares).
- One user holds at most `upload_slots_per_user` of them; further uploads of that user queue behind
  their own. The second probe kept another user's 100-byte PUT waiting 35 s behind 16 trickling
  bodies of one writer: a user's share is now the bound on what they can hold.
- A wait for a slot ends after `upload_queue_timeout_s` with 503 `uploads_busy` and Retry-After,
  without a byte of the body read.
- A body must arrive by a deadline set when its slot is taken: the idle timeout plus its declared
  size at `upload_min_bytes_per_s`. The idle timeout alone let a body that sends one byte every few
  seconds hold its slot for ever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from registry.config import Settings
from registry.errors import UploadsBusy, UploadTimeout

T = TypeVar("T")


class BodyReader:
    """A blocking read(n) over the request body, fed from the event loop to a worker thread.
    Refused with UploadTimeout when the body sends nothing for `idle_timeout_s`, or has not ended
    `deadline_s` after its first read."""

    def __init__(self, chunks: AsyncIterator[bytes], idle_timeout_s: float, deadline_s: float) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._done = False
        self._idle_timeout_s = idle_timeout_s
        self._deadline_s = deadline_s
        self._ends_at: float | None = None
        self._received = 0

    async def _next(self) -> bytes | None:
        now = anyio.current_time()
        if self._ends_at is None:
            self._ends_at = now + self._deadline_s
        left = self._ends_at - now
        try:
            with anyio.fail_after(max(0.0, min(self._idle_timeout_s, left))):
                chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError as err:
            if left <= self._idle_timeout_s:
                raise UploadTimeout(
                    f"the upload sent {self._received} bytes in {self._deadline_s:g} s, too slow for its size "
                    "(ADAPTERS_UPLOAD_MIN_BYTES_PER_S); it was discarded"
                ) from err
            raise UploadTimeout(
                f"the upload sent nothing for {self._idle_timeout_s:g} s; it was discarded"
            ) from err
        self._received += len(chunk)
        return chunk

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._done = True
            else:
                self._buf += chunk
        n = len(self._buf) if n < 0 else n
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class UploadSlots:
    """The server's upload slots, shared fairly between users (one instance per app, made at
    start-up, used from the event loop)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._total = anyio.Semaphore(settings.upload_concurrency)
        self._per_user = min(settings.upload_slots_per_user, settings.upload_concurrency)
        self._users: dict[object, tuple[anyio.Semaphore, int]] = {}
        """user -> (their semaphore, how many of their uploads hold or wait for it)."""
        self._reading: dict[object, int] = {}
        self.threads = anyio.CapacityLimiter(settings.upload_concurrency)
        """Never waited on: a caller holds one of `_total`'s slots before it takes a thread."""

    def reading(self, user: object) -> int:
        """How many of `user`'s bodies are being read now."""
        return self._reading.get(user, 0)

    @property
    def capacity(self) -> int:
        """Bodies read at once (`upload_concurrency`)."""
        return self._settings.upload_concurrency

    def usage(self) -> tuple[int, int]:
        """(bodies being read now, uploads waiting for a slot), for the metrics page. Read from
        the scrape's thread: each list() copies a dict in one C call, never mid-change."""
        reading = sum(list(self._reading.values()))
        return reading, sum(count for _, count in list(self._users.values())) - reading

    def reader(self, chunks: AsyncIterator[bytes], size: int) -> BodyReader:
        s = self._settings
        return BodyReader(
            chunks, s.upload_idle_timeout_s, s.upload_idle_timeout_s + size / s.upload_min_bytes_per_s
        )

    async def run(self, user: object, func: Callable[[], T]) -> T:
        """`func()` on an upload thread, once `user` holds one of their slots and one of the server's."""
        mine, waiting = self._users.get(user, (None, 0))
        if mine is None:
            mine = anyio.Semaphore(self._per_user)
        self._users[user] = (mine, waiting + 1)
        held: list[anyio.Semaphore] = []
        try:
            try:
                with anyio.fail_after(self._settings.upload_queue_timeout_s):
                    for semaphore in (mine, self._total):
                        await semaphore.acquire()
                        held.append(semaphore)
            except TimeoutError:
                wait = self._settings.upload_queue_timeout_s
                raise UploadsBusy(
                    f"no upload slot came free in {wait:g} s (the server reads "
                    f"{self._settings.upload_concurrency} uploads at once, {self._per_user} per user); "
                    "retry later",
                    retry_after=max(1, round(wait)),
                ) from None
            self._reading[user] = self._reading.get(user, 0) + 1
            try:
                return await anyio.to_thread.run_sync(func, limiter=self.threads)
            finally:
                self._reading[user] -= 1
                if not self._reading[user]:
                    del self._reading[user]
        finally:
            for semaphore in reversed(held):
                semaphore.release()
            sem, count = self._users[user]
            if count == 1:
                del self._users[user]
            else:
                self._users[user] = (sem, count - 1)
