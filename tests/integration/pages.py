"""Reading the forms and links of an HTML page, as a browser would, with the standard library."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    classes: list[str]
    fields: dict[str, str] = field(default_factory=dict)
    button_ids: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []
        self._form: Form | None = None
        self._link: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(
                attrs.get("action", ""),
                attrs.get("method", "get").upper(),
                attrs.get("class", "").split(),
            )
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attrs.get("name"):
            self._form.fields[attrs["name"]] = attrs.get("value", "")
        elif tag == "button" and self._form is not None and attrs.get("id"):
            self._form.button_ids.append(attrs["id"])
        elif tag == "a" and "href" in attrs:
            self._link = [attrs["href"], ""]

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join(self._link[1].split())))
            self._link = None

    def handle_data(self, data):
        if self._link is not None:
            self._link[1] += data


def _parse(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


def parse_forms(html: str) -> list[Form]:
    return _parse(html).forms


def links(html: str) -> list[tuple[str, str]]:
    """Every ``<a href>`` of the page as (href, its text with whitespace collapsed)."""
    return _parse(html).links
