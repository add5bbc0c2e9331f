"""A buyer's browser without JavaScript: cookies, forms, redirects followed one hop at a time.

Every request is recorded as one ``Hit`` (step name, status, seconds), so the report has a
latency per step, and a 5xx or a dropped connection can be told apart: a checkout error page
(502/503) is the app telling the buyer Khaime failed, i.e. an injected Khaime fault; anything
else is the app's own failure.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urljoin

import requests

#: Marks the app's page for a Khaime failure at checkout (khaime_django/checkout_error.html).
KHAIME_FAULT_PAGE = "Payment is unavailable right now"
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
    khaime_fault: bool = False
    error: str = ""


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
        started = time.monotonic()
        try:
            response = self.http.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        except requests.RequestException as error:
            seconds = time.monotonic() - started
            self.record(Hit(step, method, url, None, seconds, started, error=type(error).__name__))
            return Page(url, None, "")
        seconds = time.monotonic() - started
        text = response.text
        fault = response.status_code in (502, 503) and KHAIME_FAULT_PAGE in text
        self.record(Hit(step, method, url, response.status_code, seconds, started, khaime_fault=fault))
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
