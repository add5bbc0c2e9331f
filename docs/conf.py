"""Sphinx configuration: Markdown pages (MyST-Parser), the Furo theme, and an API reference from
the docstrings (autodoc). Built with warnings as errors: `make docs`."""

import sys
from pathlib import Path

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the models: a minimal Django, independent of the demo's settings.
if not settings.configured:
    settings.configure(
        SECRET_KEY="docs-build-only",  # noqa: S106 - nothing is signed while building docs
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "khaime_django"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ROOT_URLCONF="khaime_django.urls",
        USE_TZ=True,
    )
    django.setup()

import khaime_django  # noqa: E402 - after django.setup()

project = "khaime-django"
author = "khaime-django contributors"
copyright = "khaime-django contributors"
release = khaime_django.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"khaime-django {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
