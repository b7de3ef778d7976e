"""Setup on any Debian 12 box (issue #15): CPU torch from PyTorch's CPU wheel index, named for torch alone.

Each test runs pip as scripts/setup does, with our machines' local wheel folder hidden (no find-links, no pip
config), as on a user's fresh box. Nothing is installed (`--dry-run`) and nothing leaves this machine: the index
is a small server on loopback, or the real index's URL behind a proxy address on loopback that refuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import ROOT, free_port
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TORCH = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CONSTRAINTS = str(ROOT / "constraints.txt")


def pinned_torch() -> str:
    pins = [x for x in (ROOT / "constraints.txt").read_text().splitlines() if x.startswith("torch==")]
    assert len(pins) == 1
    return pins[0].removeprefix("torch==")


def user_box_env(**extra: str) -> dict[str, str]:
    """This environment without the local wheel folder or pip's configuration, as on a user's fresh box."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ASRBOX_")) and "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def install_torch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "install-torch"), "--dry-run"],
        env={**env, "ASRBOX_VENV": str(Path(sys.executable).parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_wheel(folder: Path) -> Path:
    """A tiny wheel named as PyTorch's CPU index names its builds (a real one is 200 MB)."""
    name = f"torch-{TORCH}+cpu"
    path = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {TORCH}+cpu\n")
        z.writestr(
            f"{name}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{name}.dist-info/RECORD", "")
    return path


@pytest.fixture()
def cpu_index(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A PEP 503 index on loopback serving torch's CPU build; yields its URL and the paths pip asked for."""
    wheel = fake_wheel(tmp_path)
    asked: list[str] = []

    class Index(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = unquote(self.path)
            asked.append(path)
            if path.rstrip("/") == "/whl/cpu/torch":
                body = f'<html><body><a href="/files/{wheel.name}">{wheel.name}</a></body></html>'.encode()
                self._send(body, "text/html")
            elif path == f"/files/{wheel.name}":
                self._send(wheel.read_bytes(), "application/octet-stream")
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu", asked
    finally:
        server.shutdown()
        server.server_close()


def test_constraints_pin_a_torch_that_both_pypi_and_the_cpu_index_can_satisfy() -> None:
    # `torch==2.13.0` is met by the CPU index's 2.13.0+cpu (a local version label); a `+cpu` pin is not on PyPI
    assert pinned_torch() == TORCH
    assert "download.pytorch.org/whl/cpu" in (ROOT / "scripts" / "install-torch").read_text()
    assert "scripts/install-torch" in (ROOT / "scripts" / "setup").read_text()


def test_torch_is_asked_of_the_cpu_index_alone_when_no_local_wheel(cpu_index: tuple[str, list[str]]) -> None:
    url, asked = cpu_index
    r = install_torch(user_box_env(ASRBOX_TORCH_INDEX=url))
    assert r.returncode == 0, r.stderr
    assert f"fetching torch=={TORCH}+cpu from {url}" in r.stderr  # the local folder had none: the index is named
    report = json.loads(r.stdout)
    [item] = report["install"]
    assert item["metadata"]["name"] == "torch" and item["metadata"]["version"] == f"{TORCH}+cpu"
    assert item["download_info"]["url"].startswith(url.removesuffix("/whl/cpu") + "/files/")
    assert asked and asked[0].rstrip("/") == "/whl/cpu/torch"  # torch alone: no other project asked for


def test_an_unreachable_index_is_named_in_one_clear_message() -> None:
    # the real index's URL; every connection goes to a proxy address on loopback where nothing listens
    proxy = f"http://127.0.0.1:{free_port()}"
    r = install_torch(user_box_env(https_proxy=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, HTTP_PROXY=proxy))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert f"PyTorch's CPU wheel index {CPU_INDEX} is unreachable" in last, r.stderr
    assert f"torch=={TORCH}+cpu" in last and "ASRBOX_TORCH_INDEX" in last


def test_a_local_wheel_folder_is_used_without_any_index(tmp_path: Path) -> None:
    fake_wheel(tmp_path)
    r = install_torch(user_box_env(PIP_FIND_LINKS=str(tmp_path), ASRBOX_TORCH_INDEX="http://127.0.0.1:9/none"))
    assert r.returncode == 0, r.stderr
    assert "fetching" not in r.stderr
    [item] = json.loads(r.stdout)["install"]
    assert item["metadata"]["version"] == f"{TORCH}+cpu" and item["download_info"]["url"].startswith("file://")


@pytest.mark.skipif(
    not any(d.metadata["Name"] == "torch" for d in metadata.distributions()), reason="the funasr extra is not installed"
)
def test_the_main_step_keeps_the_installed_cpu_torch() -> None:
    """After install-torch, setup's `pip install -c constraints.txt -e .[dev,funasr]` must not swap the CPU
    build for PyPI's CUDA one: the pin is met as it is (no index consulted)."""
    assert metadata.version("torch") == f"{TORCH}+cpu"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet", "--report", "-"]
    r = subprocess.run(
        [*pip, "-c", CONSTRAINTS, "torch", "funasr"],
        env=user_box_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["install"] == []


def default_closure() -> set[str]:
    """Every distribution asrbox's default install needs (pyproject's dependencies, then what each installed
    one requires without extras; markers evaluated for this box)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    seen: set[str] = set()
    todo = [canonicalize_name(Requirement(x).name) for x in project["dependencies"]]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for line in metadata.requires(current) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_the_default_install_needs_no_torch() -> None:
    needed = default_closure()
    assert {"faster-whisper", "kaldifst", "onnxruntime"} <= needed
    assert "torch" not in needed and "funasr" not in needed
