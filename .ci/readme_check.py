"""Run the README's marked code blocks, as written, in a new project.

A block is marked by the HTML comment on the line before its opening fence:

    <!-- readme-check: append mysite/settings.py -->   the block is appended to that file
    <!-- readme-check: create test_payments.py -->     the block becomes that file
    <!-- readme-check: run -->                          each line is run by bash, in order
    <!-- readme-check: serve /product/ -->             each line is a server started in the
        background; then a buyer opens that page, presses the buy button, pays on the emulator's
        checkout page, and the emulator's signed webhook must reach the site (answered 200)

Blocks run in the order the README shows them, in PROJECT (the directory holding manage.py),
with the virtualenv's bin/ first on PATH so `python` and `pip` are the merchant's. Two liberties
are taken: `pip install khaime-django` installs the wheel being checked instead of PyPI's, and a
serve block's fixed ports (the README's 8000 and 8765, in the block and in the project's files)
are swapped for free ones while it runs, so the check never collides with a server already there.

    python .ci/readme_check.py README.md PROJECT VENV WHEEL      # run them
    python .ci/readme_check.py README.md --list                  # show what would run
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MARKED_BLOCK = re.compile(
    r"^<!-- readme-check: (?P<action>append|create|run|serve)(?: (?P<target>\S+))? -->\n"
    r"(?:\n)?```(?P<language>[\w-]*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
ANY_MARKER = re.compile(r"^<!-- readme-check:.*$", re.MULTILINE)
#: The ports the README's quickstart uses: runserver's and the emulator's.
SERVE_PORTS = ("8000", "8765")


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
        if block.action == "serve":
            serve(block, project, env)
            continue
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


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def wait_for_port(port: str, processes: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise SystemExit(f"readme-check: a server of the serve block exited before port {port} answered")
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"readme-check: nothing answered on port {port} within {timeout:.0f} s")


def serve(block: Block, project: Path, env: dict[str, str]) -> None:
    """Start the block's servers on free ports, then buy through them as a buyer would."""
    ports = {readme_port: free_port() for readme_port in SERVE_PORTS}

    def swap(text: str) -> str:
        return re.sub(r"\b(" + "|".join(ports) + r")\b", lambda m: ports[m[1]], text)

    originals = {path: path.read_text() for path in project.rglob("*.py") if any(p in path.read_text() for p in ports)}
    for path, text in originals.items():
        path.write_text(swap(text))
    commands = [line.split("#", 1)[0].strip() for line in block.code.splitlines()]
    processes = [
        subprocess.Popen(["bash", "-c", "exec " + swap(command)], cwd=project, env=env, start_new_session=True)  # noqa: S603, S607
        for command in commands
        if command
    ]
    try:
        for port in ports.values():
            wait_for_port(port, processes)
        buy(f"http://127.0.0.1:{ports['8000']}{block.target}")
    finally:
        for process in processes:  # each server with its children (runserver's autoreloader)
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=10)
        for path, text in originals.items():
            path.write_text(text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def buy(product_url: str) -> None:
    """Open the product page, press the buy button, pay on the emulator, check the webhook."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())

    def fetch(url: str, form: dict | None = None, *, json_body: dict | None = None) -> tuple[int, str, dict]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data)  # noqa: S310 - the loopback site and emulator
        if json_body is not None:
            # The emulator's control API takes only application/json POSTs (a browser form cannot
            # reach it cross-site).
            request = urllib.request.Request(  # noqa: S310 - the loopback emulator
                url, data=json.dumps(json_body).encode(), headers={"Content-Type": "application/json"}
            )
        try:
            with browser.open(request, timeout=20) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as answer:
            return answer.code, answer.read().decode(), dict(answer.headers)

    status, page, _ = fetch(product_url)
    fields = dict(re.findall(r'name="(token|csrfmiddlewaretoken)" value="([^"]+)"', page))
    if status != 200 or "Pay $50.00" not in page or set(fields) != {"token", "csrfmiddlewaretoken"}:
        raise SystemExit(f"readme-check: the product page has no buy button (HTTP {status}):\n{page[:2000]}")
    checkout = urllib.parse.urljoin(product_url, re.search(r'<form[^>]+action="([^"]+)"', page)[1])
    status, body, headers = fetch(checkout, {**fields, "email": "buyer@example.com"})
    payment_url = headers.get("Location", "")
    if status != 303 or "/checkout/" not in payment_url:
        raise SystemExit(f"readme-check: checkout answered {status}, not a redirect to Khaime:\n{body[:2000]}")
    status, khaime_page, _ = fetch(payment_url)
    if status != 200 or "53.20" not in khaime_page:
        raise SystemExit(f"readme-check: the emulator's checkout page does not show the total $53.20 (HTTP {status})")
    emulator = urllib.parse.urljoin(payment_url, "/")
    session_id = payment_url.rstrip("/").rsplit("/", 1)[1]
    status, body, _ = fetch(f"{emulator}_emulator/sessions/{session_id}/complete", json_body={})
    if status != 200:
        raise SystemExit(f"readme-check: the emulator did not complete {session_id} ({status}): {body}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body, _ = fetch(f"{emulator}_emulator/deliveries")
        answered = [code for code in re.findall(r'"status_code": (\d+|null)', json.dumps(json.loads(body)))]
        if "200" in answered:
            print(f"readme-check: paid {session_id}; the signed webhook was answered 200", flush=True)
            return
        time.sleep(0.3)
    raise SystemExit(f"readme-check: the emulator's webhook was not answered 200 by the site: {body[:2000]}")


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
