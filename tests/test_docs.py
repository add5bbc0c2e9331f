"""The documentation site stays complete and true: every page is reachable, every setting is
documented, the status machine drawn is the one the code enforces, and the README's links land.
(The Sphinx build itself, `make docs`, fails on any warning.)"""

import re
from pathlib import Path

from khaime_django.conf import DEFAULTS
from khaime_django.transitions import ALLOWED_FROM

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


def test_the_status_machine_page_matches_the_code():
    page = (DOCS / "status-machine.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ((?:`\w+`(?:, )?)+) \|$", page, re.MULTILINE)
    drawn = {to: frozenset(re.findall(r"`(\w+)`", sources)) for to, sources in rows}
    assert drawn == {str(to): frozenset(str(s) for s in sources) for to, sources in ALLOWED_FROM.items()}


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
