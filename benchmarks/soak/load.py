"""The load: buyers playing scenarios concurrently, until the purchases are done or time is up."""

from __future__ import annotations

import itertools
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .browser import Browser, Recorder
from .scenarios import SCENARIOS, Scenario, Trip, draw


@dataclass
class Load:
    shop_url: str
    emulator_origin: str
    purchases: int
    buyers: int
    time_limit: float
    seed: int
    reload_pause: float = 1.0
    reloads: int = 3
    scenarios: list[Scenario] = field(default_factory=lambda: list(SCENARIOS))
    recorder: Recorder = field(default_factory=Recorder)
    trips: list[Trip] = field(default_factory=list)
    seconds: float = 0.0
    began: float = 0.0  # time.monotonic() when the load started
    stopped_early: str = ""

    def __post_init__(self) -> None:
        self._counter = itertools.count()
        self._started = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def started(self) -> int:
        return self._started

    def stop(self, why: str) -> None:
        self.stopped_early = self.stopped_early or why
        self._stop.set()

    def run(self) -> None:
        began = self.began = time.monotonic()
        deadline = began + self.time_limit
        timer = threading.Timer(self.time_limit, self.stop, [f"time limit of {self.time_limit:.0f} s reached"])
        timer.daemon = True
        timer.start()
        pool = ThreadPoolExecutor(self.buyers, thread_name_prefix="buyer")
        try:
            futures = [pool.submit(self._one, number, deadline) for number in range(self.purchases)]
            for future in futures:
                future.result()
        except BaseException:
            # Ctrl-C: start nothing more; the trips in flight end when the stack is stopped.
            self.stop("interrupted")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        else:
            pool.shutdown()
        finally:
            timer.cancel()
            self.seconds = time.monotonic() - began

    def _one(self, number: int, deadline: float) -> None:
        if self._stop.is_set() or time.monotonic() > deadline:
            return
        with self._lock:
            self._started += 1
        rng = random.Random(f"{self.seed}:{number}")
        scenario = draw(rng, self.scenarios)
        browser = Browser(self.recorder, self.emulator_origin)
        trip = Trip(
            scenario=scenario.name,
            email=f"buyer{number}@soak.example",
            browser=browser,
            shop_url=self.shop_url,
            rng=rng,
            reload_pause=self.reload_pause,
            reloads=self.reloads,
            deadline=deadline,
        )
        try:
            scenario.play(trip)
        except Exception as error:  # a harness bug must show in the report, not kill the run
            trip.notes.append(f"scenario crashed: {error!r}")
        finally:
            browser.close()
            with self._lock:
                self.trips.append(trip)
