"""Run the README's marked code blocks, as written, in a new project.

A block is marked by the HTML comment on the line before its opening fence:

    <!-- readme-check: append mysite/settings.py -->   the block is appended to that file
    <!-- readme-check: create test_payments.py -->     the block becomes that file
    <!-- readme-check: run -->                          each line is run by bash, in order

Blocks run in the order the README shows them, in PROJECT (the directory holding manage.py),
with the virtualenv's bin/ first on PATH so `python` and `pip` are the merchant's. The one
liberty taken: `pip install khaime-django` installs the wheel being checked instead of PyPI's.

    python .ci/readme_check.py README.md PROJECT VENV WHEEL      # run them
    python .ci/readme_check.py README.md --list                  # show what would run
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MARKED_BLOCK = re.compile(
    r"^<!-- readme-check: (?P<action>append|create|run)(?: (?P<target>\S+))? -->\n"
    r"(?:\n)?```(?P<language>[\w-]*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
ANY_MARKER = re.compile(r"^<!-- readme-check:.*$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    action: str
    target: str | None
    language: str
    code: str
    line: int


def blocks(readme: str) -> list[Block]:
    """The marked blocks, in order. A marker not followed by a fenced block is an error."""
    found = [
        Block(m["action"], m["target"], m["language"], m["code"], readme.count("\n", 0, m.start()) + 1)
        for m in MARKED_BLOCK.finditer(readme)
    ]
    markers = len(ANY_MARKER.findall(readme))
    if markers != len(found):
        raise SystemExit(f"readme-check: {markers} markers but {len(found)} marked blocks: a marker is malformed")
    for block in found:
        if (block.action == "run") != (block.target is None):
            raise SystemExit(f"readme-check: README.md:{block.line}: {block.action} needs a target, run takes none")
    return found


def block_named(readme: str, target: str) -> str:
    """The code of the block created as ``target`` (for the repository's own tests)."""
    [code] = [block.code for block in blocks(readme) if block.action == "create" and block.target == target]
    return code


def run(readme: str, project: Path, venv: Path, wheel: str) -> None:
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    for block in blocks(readme):
        where = f"README.md:{block.line} ({block.action}{' ' + block.target if block.target else ''})"
        print(f"readme-check: {where}", flush=True)
        if block.action in ("append", "create"):
            path = project / block.target
            if block.action == "append" and not path.exists():
                raise SystemExit(f"readme-check: {where}: {path} does not exist to append to")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if block.action == "append" else "w") as file:
                file.write(("\n" if block.action == "append" else "") + block.code)
            continue
        script = re.sub(r"^(pip install .*)\bkhaime-django\b", rf"\g<1>{wheel}", block.code, flags=re.MULTILINE)
        # The README is ours, and running it as written is the point.
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env, check=False)  # noqa: S603, S607
        if result.returncode:
            raise SystemExit(f"readme-check: {where} failed (exit {result.returncode}):\n{block.code}")


def main(argv: list[str]) -> None:
    readme = Path(argv[1]).read_text()
    if argv[2:] == ["--list"]:
        for block in blocks(readme):
            print(f"--- line {block.line}: {block.action} {block.target or ''}\n{block.code}")
        return
    project, venv, wheel = Path(argv[2]), Path(argv[3]), argv[4]
    run(readme, project, venv, wheel)
    print(f"readme-check: all {len(blocks(readme))} marked blocks of the README ran", flush=True)


if __name__ == "__main__":
    main(sys.argv)
