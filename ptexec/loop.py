"""The executor's wall-clock loop: when things happen, not what they mean.

:class:`WallClockLoop` turns the clock over: it lets jobs arrive at their arrival times, asks
its host to poll the workers and resume the jobs, fires the policy's wake-up times, coalesces
every reason to decide into one decision per turn, records the time series, and sleeps on the
workers (at most ``MAX_IDLE_S``) when nothing moved. It ends when every job has arrived and
the host says all is settled, or at the horizon. What a turn does with workers, jobs and the
cluster state is the host's (:class:`LoopHost`, the ``Executor``).

A later asynchronous service (e.g. Prompt Bank assessments on workers) plugs in as one more
thing the host polls each turn; the loop itself never blocks except in ``LoopHost.sleep``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from typing import Protocol

from ptexec.jobs import ExecJob

MAX_IDLE_S = 0.05
"""The longest the loop sleeps in one turn when nothing happens."""


class WallClock:
    """Seconds since :meth:`start` (``time.monotonic``): the executor's clock."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def start(self) -> None:
        """Time 0 is now."""
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self._t0


class LoopHost(Protocol):
    """What the loop drives each turn (the executor)."""

    def arrive(self, job: ExecJob, now: float) -> None:
        """Job ``job`` arrives (its arrival time has come)."""
        ...

    def poll(self) -> bool:
        """Collect worker replies and deaths, resume jobs; True when anything moved."""
        ...

    def resume_jobs(self) -> bool:
        """Resume the jobs whose replies have arrived; True when any moved."""
        ...

    def decide(self, now: float) -> float | None:
        """Ask the policy at ``now`` and carry out its decision; returns its wake-up time."""
        ...

    def record(self, now: float, force: bool = False) -> None:
        """Sample the cluster time series."""
        ...

    def count_event(self) -> None:
        """One more event (an arrival, a wake-up) for the run's statistics."""
        ...

    def settled(self) -> bool:
        """No live job and no job still at work (storing a prompt, detaching)."""
        ...

    def sleep(self, timeout: float) -> None:
        """Wait until a worker has something to say, or ``timeout`` seconds."""
        ...


class WallClockLoop:
    """Runs ``host`` on ``clock`` until every job of ``arrivals`` (sorted by arrival) is done
    or ``horizon_s`` passes."""

    def __init__(
        self,
        host: LoopHost,
        clock: WallClock,
        arrivals: Sequence[ExecJob],
        horizon_s: float,
    ) -> None:
        self.host = host
        self.clock = clock
        self.arrivals = list(arrivals)
        self.horizon_s = horizon_s
        self._wakes: list[float] = []
        self._decision_pending = False

    def request_decision(self) -> None:
        """Ask the policy once more in this turn (coalesced with every other reason)."""
        self._decision_pending = True

    def wake_at(self, t: float, now: float) -> None:
        """Ask the policy again at ``t`` (ignored unless it is later than ``now``)."""
        if t > now and t not in self._wakes:
            heapq.heappush(self._wakes, t)

    def run(self) -> bool:
        """Turn until done or the horizon; True when the horizon ended the run."""
        host, clock = self.host, self.clock
        nxt = 0
        host.record(clock.now(), force=True)
        while True:
            now = clock.now()
            progressed = False
            while nxt < len(self.arrivals) and self.arrivals[nxt].spec.arrival <= now:
                host.arrive(self.arrivals[nxt], now)
                host.count_event()
                self.request_decision()
                nxt += 1
                progressed = True
            progressed |= host.poll()
            now = clock.now()
            while self._wakes and self._wakes[0] <= now:
                heapq.heappop(self._wakes)
                host.count_event()
                self.request_decision()
            if self._decision_pending:
                self._decision_pending = False
                now = clock.now()
                wake = host.decide(now)
                if wake is not None:
                    self.wake_at(wake, now)
                progressed = True
                progressed |= host.resume_jobs()
            host.record(clock.now())
            if nxt == len(self.arrivals) and host.settled():
                return False
            if clock.now() >= self.horizon_s:
                return True
            if not progressed:
                self._idle(self.arrivals[nxt].spec.arrival if nxt < len(self.arrivals) else None)

    def _idle(self, next_arrival: float | None) -> None:
        """Sleep until a worker replies, the next arrival or wake-up, or ``MAX_IDLE_S``."""
        now = self.clock.now()
        until = now + MAX_IDLE_S
        if next_arrival is not None:
            until = min(until, next_arrival)
        if self._wakes:
            until = min(until, self._wakes[0])
        self.host.sleep(max(0.0, until - now))


__all__ = ["MAX_IDLE_S", "LoopHost", "WallClock", "WallClockLoop"]
