"""Peak resident memory of the server processes, sampled with psutil on a background thread.

psutil reports current RSS only, so the peak is the largest sample (every 50 ms) within each
phase; a spike shorter than that could be missed, which is fine for steady-state load.
"""

from __future__ import annotations

import threading

import psutil

__all__ = ["RssSampler"]

_INTERVAL = 0.05


class RssSampler:
    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._peaks = dict.fromkeys(pids, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(_INTERVAL):
            self._sample()

    def _sample(self) -> None:
        for name, process in self._processes.items():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue  # the process is gone; the run will report why
            with self._lock:
                self._peaks[name] = max(self._peaks[name], rss)

    def take_peaks_mb(self) -> dict[str, float]:
        """Peaks since the previous call (one phase), in MiB; the next phase starts from zero."""
        self._sample()
        with self._lock:
            peaks = {name: value / 2**20 for name, value in self._peaks.items()}
            self._peaks = dict.fromkeys(self._peaks, 0)
        return peaks
