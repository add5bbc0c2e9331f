"""The README's "Test your site with the emulator" example, run here exactly as the README shows
it: the block marked ``<!-- readme-check: create test_payments.py -->`` is read from README.md and
its tests run in this module. (.ci/wheel-check runs the same block in a new startproject project
with the built wheel.)
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_check", ROOT / ".ci" / "readme_check.py")
assert _spec is not None and _spec.loader is not None
readme_check = sys.modules.setdefault("readme_check", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(readme_check)

README_TEST = readme_check.block_named((ROOT / "README.md").read_text(), "test_payments.py")
exec(compile(README_TEST, "README.md: test_payments.py", "exec"))  # noqa: S102 - our own README's code


def test_the_readme_example_defines_its_tests():
    assert "test_buyer_pays_and_comes_back" in globals()
    assert "test_webhook_completes_the_payment_when_the_buyer_never_returns" in globals()
