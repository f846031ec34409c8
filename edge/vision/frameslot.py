"""The latest-frame slot between a camera's capture thread and its analysis loop.

Three buffers, allocated once per frame size: capture writes into one, the newest complete frame waits in
another, analysis reads the third. Analysis always gets the newest frame; a frame that was never taken
because a newer one arrived is dropped and counted, so no queue of stale frames can build up.

A `paced` slot drops nothing: `publish` returns once analysis took the frame, so a source that decodes faster
than analysis (a file played at full speed) runs at analysis's pace. Without pacing such a capture thread
would spin on the GIL and starve analysis of it (measured: 10 frames/s analysed of 340 decoded).
"""

from __future__ import annotations

import threading

import numpy as np


class LatestFrame:
    """A one-frame mailbox that never blocks the writer."""

    def __init__(self, *, paced: bool = False) -> None:
        self.paced = paced
        self._buffers: list[np.ndarray] = []
        self._times = [0.0, 0.0, 0.0]
        self._writing = 0
        self._ready: int | None = None
        self._reading: int | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.published = 0
        self.dropped = 0

    def writable(self, shape: tuple[int, int]) -> np.ndarray:
        """The buffer to fill with the next frame (new buffers when the frame size changes)."""
        with self._cond:
            if not self._buffers or self._buffers[0].shape != shape:
                self._buffers = [np.empty(shape, np.uint8) for _ in range(3)]
                self._ready = self._reading = None
                self._writing = 0
            return self._buffers[self._writing]

    def publish(self, t: float) -> None:
        """The buffer from `writable` now holds a complete frame taken at time `t`."""
        with self._cond:
            if self._ready is not None:
                self.dropped += 1
            self._ready = self._writing
            self._times[self._ready] = t
            self.published += 1
            self._writing = next(i for i in range(3) if i not in (self._ready, self._reading))
            self._cond.notify_all()
            if self.paced:
                self._cond.wait_for(lambda: self._ready is None or self._closed)

    def take(self, timeout_s: float) -> tuple[np.ndarray, float] | None:
        """The newest frame and its time, waiting up to `timeout_s`; None on timeout or once closed.

        The frame stays valid until the next `take`.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready is not None or self._closed, timeout_s) or self._ready is None:
                return None
            self._reading, self._ready = self._ready, None
            self._cond.notify_all()  # a paced writer waits for this
            return self._buffers[self._reading], self._times[self._reading]

    def close(self) -> None:
        """Wake the reader for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
