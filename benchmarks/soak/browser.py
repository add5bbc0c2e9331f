"""A buyer's browser without JavaScript: cookies, forms, redirects followed one hop at a time.

Every request is recorded as one ``Hit`` (step name, status, seconds), so the report has a
latency per step. A 5xx is recorded with the kind of page it was (``Hit.page``): the app's
retryable pages say why they were shown (Khaime failed, the session is still being created, the
database was unreachable); the invariants then tie each one to an injected fault, or count it as
the app's own failure. A bare 5xx has no kind and is always the app's own failure.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urljoin

import requests

#: What each retryable page says (khaime_django/checkout_error.html, the demo's 503 page), to the
#: kind of 5xx it is (the first that matches).
PAGE_KINDS = (
    ("This payment is still being created", "in progress"),  # another request holds the purchase
    ("We could not show this payment", "database"),  # the return page lost its database connection
    ("could not start this payment", "khaime"),  # 502: Khaime answered an error
    ("provider is not available right now", "khaime or database"),  # 503: 429, a timeout, or the database
    ("could not reach its database", "database"),  # the demo's own pages (demo_project/shop/middleware.py)
)
MAX_REDIRECTS = 5
TIMEOUT = (5, 90)


@dataclass(frozen=True)
class Hit:
    step: str
    method: str
    url: str
    status: int | None  # None: no answer (connection refused or reset)
    seconds: float
    at: float  # time.monotonic() when it started
    page: str = ""  # a 5xx page's kind (PAGE_KINDS), "" for a bare one
    error: str = ""
    wall: float = 0.0  # time.time() when it started, to match the emulator's log

    @property
    def khaime_fault(self) -> bool:
        """A retryable page the app shows for a failure outside itself (Khaime, its database)."""
        return bool(self.page)

    @property
    def end(self) -> float:
        return self.at + self.seconds


@dataclass
class Recorder:
    """Every hit of every buyer, shared between threads."""

    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, hit: Hit) -> None:
        with self.lock:
            self.hits.append(hit)

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)


@dataclass(frozen=True)
class Page:
    url: str
    status: int | None
    text: str
    location: str = ""  # where a redirect points, absolute

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    def forms(self) -> list[dict]:
        """Every ``<form>``: its action (absolute) and its named inputs."""
        found = []
        for match in re.finditer(r"<form\b([^>]*)>(.*?)</form>", self.text, re.S | re.I):
            attrs, body = match.groups()
            action = _attr(attrs, "action") or self.url
            fields = {}
            for tag in re.finditer(r"<input\b([^>]*)>", body, re.I):
                name = _attr(tag.group(1), "name")
                if name:
                    fields[name] = _attr(tag.group(1), "value") or ""
            found.append({"action": urljoin(self.url, action), "fields": fields})
        return found

    def form_to(self, suffix: str) -> dict | None:
        return next((form for form in self.forms() if form["action"].rstrip("/").endswith(suffix)), None)

    def links(self) -> list[str]:
        return [urljoin(self.url, unescape(href)) for href in re.findall(r'<a\b[^>]*href="([^"]*)"', self.text)]

    @property
    def shown_status(self) -> str:
        """The status the app's session page shows (its data-khaime-status), else ""."""
        match = re.search(r'data-khaime-status="([a-z]+)"', self.text)
        return match.group(1) if match else ""


def _attr(attrs: str, name: str) -> str | None:
    match = re.search(rf'\b{name}\s*=\s*"([^"]*)"', attrs, re.I)
    return unescape(match.group(1)) if match else None


def page_kind(status: int, text: str) -> str:
    """The kind of a retryable 502/503 page (PAGE_KINDS), "" for anything else."""
    if status not in (502, 503):
        return ""
    if status == 502 and "Payment is unavailable right now" in text:
        return "khaime"  # Khaime answered an error (a dropped database connection is a 503)
    return next((kind for marker, kind in PAGE_KINDS if marker in text), "")


class Browser:
    """One buyer's browser: its own cookie jar and connection pool."""

    def __init__(self, recorder: Recorder, emulator_origin: str):
        self.recorder = recorder
        self.emulator_origin = emulator_origin
        self.history: list[Hit] = []  # this browser's own hits, in order
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: no proxy from the environment

    def close(self) -> None:
        self.http.close()

    def record(self, hit: Hit) -> None:
        self.history.append(hit)
        self.recorder.add(hit)

    def get(self, url: str, step: str) -> Page:
        return self._follow("GET", url, None, step)

    def submit(self, form: dict, step: str, **overrides: str) -> Page:
        return self._follow("POST", form["action"], {**form["fields"], **overrides}, step)

    def _follow(self, method: str, url: str, data: dict | None, step: str) -> Page:
        """One request, then its redirects as a browser follows them (303/302 -> GET), each a hit
        named for the page it lands on."""
        for _ in range(MAX_REDIRECTS + 1):
            page = self._one(method, url, data, step)
            if page.status not in (301, 302, 303, 307, 308):
                return page
            method, data, url = "GET", None, page.location
            step = self.step_for(url)
        return page

    def _one(self, method: str, url: str, data: dict | None, step: str) -> Page:
        started, wall = time.monotonic(), time.time()
        try:
            response = self.http.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        except requests.RequestException as error:
            seconds = time.monotonic() - started
            self.record(Hit(step, method, url, None, seconds, started, error=type(error).__name__, wall=wall))
            return Page(url, None, "")
        seconds = time.monotonic() - started
        text = response.text
        kind = page_kind(response.status_code, text)
        self.record(Hit(step, method, url, response.status_code, seconds, started, page=kind, wall=wall))
        location = urljoin(url, response.headers["Location"]) if response.is_redirect else ""
        return Page(url, response.status_code, text, location)

    def step_for(self, url: str) -> str:
        """The step a redirect lands on, named from its URL."""
        if url.startswith(self.emulator_origin + "/checkout/"):
            return "hosted page"
        for suffix, step in (("/success/", "success return"), ("/cancel/", "cancel return")):
            if url.endswith(suffix):
                return step
        return "other page"
