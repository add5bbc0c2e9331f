"""The documentation site stays complete and true: every page is reachable, every setting is
documented, the status machine drawn is the one the code enforces, and the README's links land.
(The Sphinx build itself, `make docs`, fails on any warning.)"""

import ast
import re
import textwrap
from pathlib import Path

import pytest
from django.dispatch import Signal

from khaime_django import signals
from khaime_django.conf import DEFAULTS
from khaime_django.refund_statuses import REFUND_ALLOWED_FROM, RefundStatus
from khaime_django.statuses import ALLOWED_FROM, Status
from khaime_django.subscription_statuses import SUBSCRIPTION_ALLOWED_FROM, SubscriptionStatus

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def toctree_entries() -> list[str]:
    index = (DOCS / "index.md").read_text()
    entries = []
    for body in re.findall(r"```\{toctree\}\n(.*?)```", index, re.DOTALL):
        entries += [line.strip() for line in body.splitlines() if line.strip() and not line.startswith(":")]
    return entries


def test_every_page_is_in_the_toctree_and_every_entry_is_a_page():
    pages = sorted(path.stem for path in DOCS.glob("*.md") if path.stem != "index")
    entries = toctree_entries()
    assert sorted(entries) == pages, "list each docs/*.md page once in a toctree of docs/index.md"
    assert len(entries) == len(set(entries))
    assert not any("*" in entry for entry in entries), "the toctree is explicit: no globs"


def test_every_setting_is_in_the_settings_reference():
    page = (DOCS / "settings.md").read_text()
    table = {
        name
        for row in re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \|", page, re.MULTILINE)
        for name in re.findall(r"`([A-Z_]+)`", row)
    }
    assert table == set(DEFAULTS), f"docs/settings.md table differs from conf.DEFAULTS: {table ^ set(DEFAULTS)}"


def section(page: str, title: str) -> str:
    """The text of the ``## title`` section of ``page``."""
    text = (DOCS / page).read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/{page} has no '## {title}' section"
    return match.group(1)


MACHINES = [
    ("Payment sessions", ALLOWED_FROM, Status),
    ("Subscriptions", SUBSCRIPTION_ALLOWED_FROM, SubscriptionStatus),
    ("Refunds", REFUND_ALLOWED_FROM, RefundStatus),
]


@pytest.mark.parametrize(("title", "allowed_from", "statuses"), MACHINES, ids=[m[0] for m in MACHINES])
def test_the_status_machine_page_matches_the_code(title, allowed_from, statuses):
    text = section("status-machine.md", title)
    rows = re.findall(r"^\| `(\w+)` \| ((?:`\w+`(?:, )?)+) \|$", text, re.MULTILINE)
    drawn = {to: frozenset(re.findall(r"`(\w+)`", sources)) for to, sources in rows}
    assert drawn == {str(to): frozenset(str(s) for s in sources) for to, sources in allowed_from.items()}
    missing = [status for status in statuses.values if status not in text]
    assert not missing, f"statuses not on the {title} diagram: {missing}"


def test_every_signal_is_in_the_signals_reference():
    page = (DOCS / "signals.md").read_text()
    names = sorted(name for name, value in vars(signals).items() if isinstance(value, Signal))
    assert len(names) >= 20
    missing = [name for name in names if f"`{name}`" not in page]
    assert not missing, f"signals missing from docs/signals.md: {missing}"


def test_every_management_command_and_option_is_in_the_operating_page():
    from django.core.management import get_commands, load_command_class

    page = (DOCS / "operating.md").read_text()
    commands = sorted(name for name, app in get_commands().items() if app == "khaime_django")
    assert commands
    for name in commands:
        assert f"`{name}" in page or f"manage.py {name}" in page, f"manage.py {name} is not in docs/operating.md"
        parser = load_command_class("khaime_django", name).create_parser("manage.py", name)
        options = {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and action.dest not in DJANGO_COMMON_OPTIONS
        }
        documented = DOCS / ("emulator.md" if name == "khaime_emulator" else "operating.md")
        text = documented.read_text()
        # The emulator's page names each option as its Python keyword (`--a-b` is `a_b`).
        missing = sorted(
            option for option in options if option not in text and f"`{option[2:].replace('-', '_')}`" not in text
        )
        assert not missing, f"options of {name} missing from docs/{documented.name}: {missing}"


DJANGO_COMMON_OPTIONS = {
    "help",
    "version",
    "verbosity",
    "settings",
    "pythonpath",
    "traceback",
    "no_color",
    "force_color",
    "skip_checks",
}


def test_the_api_reference_covers_the_public_modules():
    page = (DOCS / "api.md").read_text()
    for module in (
        "khaime_django.services.subscriptions",
        "khaime_django.services.refunds",
        "khaime_django.access",
        "khaime_django.tasks",
    ):
        assert module in page, module


def test_the_readme_links_into_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10
    missing = sorted({link for link in links if not (ROOT / link).exists()})
    assert not missing


def test_the_dashboard_paths_are_the_api_facts_everywhere():
    """Keys: Settings > API & Integrations; webhooks: Settings > API. No other spelling."""
    texts = {
        path: path.read_text() for path in [ROOT / "README.md", *DOCS.glob("*.md"), ROOT / "khaime_django/checks.py"]
    }
    for path, text in texts.items():
        assert "Settings →" not in text, path
        for mention in re.findall(r"Settings > [A-Za-z &]+", text):
            assert mention.rstrip() in ("Settings > API & Integrations", "Settings > API"), (path, mention)


def test_every_check_id_the_docs_mention_exists():
    """A renumbered check must not leave a stale id in the README, the docs or the changelog."""
    defined = set(re.findall(r'id="(khaime\.[EW]\d+)"', (ROOT / "khaime_django/checks.py").read_text()))
    texts = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md"), *(ROOT / "changelog.d").glob("*.md")]
    stale = {
        (path.name, found)
        for path in texts
        for found in re.findall(r"khaime\.[EW]\d+", path.read_text())
        if found not in defined
    }
    assert not stale


@pytest.mark.parametrize(
    ("title", "page"),
    [
        ("Subscriptions", "docs/subscriptions.md"),
        ("Refunds", "docs/refunds.md"),
        ("Background processing", "docs/background.md"),
        ("Security", "docs/security.md"),
        ("In production", "docs/settings.md"),
    ],
)
def test_the_readme_has_a_short_section_linking_to_each_topic(title, page):
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    assert f"]({page}" in match.group(1), f"README's {title} section does not link to {page}"


def test_the_readme_starts_with_make_demo_and_make_test():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\n(.*?)```", readme, re.DOTALL).group(1).splitlines()
    assert first_block[0].startswith("make demo") and first_block[1].startswith("make test")


def test_every_python_snippet_in_the_readme_and_the_docs_parses():
    """Snippets are pasted: a typo in one is a SyntaxError in a merchant's project."""
    broken, parsed = [], 0
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for match in re.finditer(r"^( *)```python\n(.*?)^\1```", path.read_text(), re.MULTILINE | re.DOTALL):
            try:
                ast.parse(textwrap.dedent(match.group(2)))
                parsed += 1
            except SyntaxError as error:
                broken.append(f"{path.name}: {error}")
    assert not broken
    assert parsed >= 20
