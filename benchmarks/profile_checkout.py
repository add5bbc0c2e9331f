"""Where the checkout time goes: pyinstrument over many ``POST khaime:checkout``."""

from __future__ import annotations

from collections.abc import Callable

from .checkout import Ours
from .db import empty_tables
from .harness import Context, Section, Table

TITLE = "Where the checkout time goes (pyinstrument)"

#: (label, does this frame start the part?) — the time of the outermost matching frames is summed.
PARTS: list[tuple[str, Callable]] = [
    ("test client: build the request, middleware, response", None),  # the remainder
    (
        "Khaime round trip (KhaimeClient._send_once: requests + emulator)",
        lambda f: f.function == "_send_once",
    ),
    (
        "buy-button token check (Purchase.from_token, signing)",
        lambda f: f.function == "from_token",
    ),
    ("form validation (CheckoutForm.is_valid)", lambda f: f.function == "is_valid"),
    (
        "request validation (validate_session_request)",
        lambda f: f.function == "validate_session_request",
    ),
    (
        "INSERT of the session (_insert_or_reuse)",
        lambda f: f.function == "_insert_or_reuse",
    ),
    ("status change to pending (transition)", lambda f: f.function == "transition"),
    (
        "return URLs (reverse + build_absolute_uri)",
        lambda f: (
            f.function in ("_absolute_url", "reverse")
            and "khaime_django" in _caller_path(f)
        ),
    ),
    ("purchase key (sha256 of buyer + price)", lambda f: f.function == "_purchase_key"),
    (
        "payment_url check (_check_payment_url)",
        lambda f: f.function == "_check_payment_url",
    ),
    ("get_client (settings read, cache look-up)", lambda f: f.function == "get_client"),
]


def _caller_path(frame) -> str:
    parent = getattr(frame, "parent", None)
    return getattr(parent, "file_path", "") or ""


def run(ctx: Context) -> Section:
    try:
        from pyinstrument import Profiler
    except ImportError:
        return Section(
            TITLE, skipped="pyinstrument is not installed (`pip install pyinstrument`)."
        )

    count = ctx.sizes.profile_checkouts
    empty_tables()
    ours = Ours()
    for r in range(5):  # warm: templates compiled, connections open
        ours.check(ours.run(ours.prepare(r)))
    forms = [ours.prepare(r) for r in range(count)]
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for form in forms:
        ours.run(form)
    session = profiler.stop()
    root = session.root_frame()
    total = root.time if root is not None else 0.0

    sums = {label: 0.0 for label, _ in PARTS}
    if root is not None:
        _sum_parts(root, sums)
    sums[PARTS[0][0]] = max(0.0, total - sum(sums.values()))
    table = Table(["part of one checkout", "ms per checkout", "share"])
    for label, seconds in sorted(sums.items(), key=lambda item: -item[1]):
        table.add(
            label,
            f"{seconds / count * 1000:.2f}",
            f"{seconds / total:.0%}" if total else "–",
        )
    table.add("**total (under the profiler)**", f"{total / count * 1000:.2f}", "100%")
    tree = profiler.output_text(
        unicode=False,
        color=False,
        show_all=False,
        processor_options={"filter_threshold": 0.02},
    )
    section = Section(TITLE, method=METHOD.format(count=count), tables=[table])
    section.notes.append(
        "<details><summary>pyinstrument tree (frames ≥ 2% of the total)</summary>\n\n```\n"
        + _trim(tree)
        + "\n```\n</details>"
    )
    empty_tables()
    return section


def _sum_parts(frame, sums: dict[str, float]) -> None:
    for label, matches in PARTS[1:]:
        if matches(frame):
            sums[label] += frame.time
            return  # outermost match only: nested parts are counted in their parent
    for child in frame.children:
        _sum_parts(child, sums)


def _trim(text: str, limit: int = 120) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    body = [
        line
        for line in lines
        if not line.lstrip().startswith(
            (
                "_ ._",
                "pyinstrument",
                "Recorded:",
                "Samples:",
                "Duration:",
                "Program:",
                "CPU time:",
                "To view",
            )
        )
    ]
    return "\n".join(body[:limit])


METHOD = """
{count} `POST khaime:checkout` through `django.test.Client` at 0 ms emulator latency, sampled
every 0.5 ms by pyinstrument (wall-clock time: waiting on a socket counts). The table sums the
time of the outermost frame of each part; "test client ..." is what remains (request building,
middleware, URL resolution, response). Profiling slows Python code, so the total is above the
un-profiled median in section 1; the shares are what matters.
"""
