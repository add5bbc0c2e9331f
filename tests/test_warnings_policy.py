"""The suite runs with the app's own deprecation warnings as errors (setup.cfg filterwarnings).

A warning is attributed to the module whose code the warning's stack level points at, so these
tests issue warnings as if from a khaime_django module (``warn_explicit``) and check that the
configured filters, which pytest applies around every test, turn them into exceptions.
"""

import warnings

import django.utils.deprecation
import pytest


def warn_from(module: str, category: type[Warning]) -> None:
    warnings.warn_explicit("old API", category, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module)


@pytest.mark.parametrize("module", ["khaime_django", "khaime_django.services", "khaime_django.emulator.server"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_warning_from_khaime_django_fails_the_test(module, category):
    with pytest.raises(category, match="old API"):
        warn_from(module, category)


def test_djangos_removal_warnings_from_khaime_django_fail_the_test():
    # RemovedInNextVersionWarning is a DeprecationWarning, the one after it a PendingDeprecationWarning.
    removal_warnings = [
        value
        for name, value in vars(django.utils.deprecation).items()
        if name.startswith("RemovedInDjango") and isinstance(value, type)
    ]
    assert removal_warnings
    for category in removal_warnings:
        with pytest.raises(category):
            warn_from("khaime_django.models", category)


def test_a_deprecation_warning_from_another_library_does_not_fail_the_test():
    with warnings.catch_warnings(record=True) as caught:  # keeps the configured filters
        warn_from("some_other_library", DeprecationWarning)

    assert [str(warning.message) for warning in caught] == ["old API"]
