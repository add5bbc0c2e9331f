"""What merchants expect of a reusable app: its text can be translated, its models and fields
have names for the admin, and its version is stated once."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.template.base import Lexer, TokenType
from django.utils.functional import Promise

import khaime_django
from khaime_django import models as khaime_models
from khaime_django.purchases import Purchase

TEMPLATES = sorted((Path(khaime_django.__file__).parent / "templates").rglob("*.html"))
MODELS = list(apps.get_app_config("khaime_django").get_models())


def own_fields(model):
    return [field for field in model._meta.get_fields() if not field.auto_created and field.model is model]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_model_has_translatable_verbose_names(model):
    options = model._meta.original_attrs

    assert isinstance(options.get("verbose_name"), Promise)
    assert isinstance(options.get("verbose_name_plural"), Promise)


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_field_has_a_translatable_verbose_name_and_help_text(model):
    for field in own_fields(model):
        declared = field.deconstruct()[3]  # only what the field was given, not Django's defaults
        assert isinstance(declared.get("verbose_name"), Promise), f"{model.__name__}.{field.name}"
        if declared.get("help_text"):
            assert isinstance(declared["help_text"], Promise), f"{model.__name__}.{field.name} help_text"


@pytest.mark.parametrize(
    "choices", [khaime_models.Status, khaime_models.Mode, khaime_models.Source, khaime_models.WebhookOutcome]
)
def test_every_choice_label_is_translatable(choices):
    assert all(isinstance(member.label, Promise) for member in choices)


def test_every_admin_action_and_column_title_is_translatable():
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "khaime_django":
            continue
        for name in model_admin.actions or ():
            action = getattr(model_admin, name)
            assert isinstance(action.short_description, Promise), name
            checked += 1
        for column in model_admin.list_display:
            method = getattr(model_admin, column, None) if isinstance(column, str) else None
            if hasattr(method, "short_description"):
                assert isinstance(method.short_description, Promise), column
    assert checked


def test_a_refused_buy_button_tells_the_buyer_in_their_language():
    # The messages reach checkout_invalid.html; lazy, so they follow the request's language.
    with pytest.raises(Exception) as refused:
        Purchase.from_token("")
    assert isinstance(refused.value.args[0], Promise)


def untranslated_text(template: Path) -> list[str]:
    """Words in a template outside {% translate %}/{% blocktranslate %}, markup and scripts."""
    text = []
    in_blocktranslate = False
    for token in Lexer(template.read_text()).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0]
            in_blocktranslate = name in ("blocktranslate", "blocktrans") or (
                in_blocktranslate and name not in ("endblocktranslate", "endblocktrans")
            )
        if token.token_type == TokenType.TEXT and not in_blocktranslate:
            text.append(token.contents)
        else:
            text.append("#")  # a tag or variable, possibly inside an HTML attribute
    prose = re.sub(r"<script.*?</script>", " ", "".join(text), flags=re.S)
    prose = re.sub(r"<[^>]*>", " ", prose)  # markup and its attributes are not prose
    return re.findall(r"[A-Za-z]{2,}", prose)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_every_word_a_buyer_reads_in_a_template_is_translatable(template):
    assert untranslated_text(template) == []


def test_the_template_check_finds_untranslated_words(tmp_path):
    template = tmp_path / "page.html"
    template.write_text('{% load i18n %}<p class="x">{% translate "Paid" %} Thank you</p>')

    assert untranslated_text(template) == ["Thank", "you"]


def test_the_version_is_stated_once_and_the_package_metadata_reads_it():
    assert importlib.metadata.version("khaime-django") == khaime_django.__version__
