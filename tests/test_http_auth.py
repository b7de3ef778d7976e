"""Auth with the daemon bound to 0.0.0.0 (not loopback) and reached at 127.0.0.1: nothing but the open routes
answers until a password or key is set; keys (the official `openai` client), the console's login, session
cookie and CSRF token, revocation, a password change, and the login rate limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import eval_clip
from http_daemon import HttpDaemon, assert_error

pytestmark = pytest.mark.model

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[HttpDaemon]:
    d = HttpDaemon(tmp_path_factory.mktemp("httpauth"), cache_dir, bind="0.0.0.0")
    yield d
    assert PASSWORD not in d.stop()  # no secret in the log


def test_network_bind_is_closed_until_a_credential_is_set(daemon: HttpDaemon) -> None:
    u = daemon.url
    assert httpx.get(f"{u}/health", timeout=30).status_code == 200  # open, whatever the bind
    closed = httpx.get(f"{u}/api/state", timeout=30)
    assert_error(closed, 401, "asrbox passwd", "asrbox keys create")
    assert closed.headers["www-authenticate"].startswith("Bearer")
    wav, _ = eval_clip("en_jfk")
    r = httpx.post(f"{u}/v1/audio/transcriptions", files={"file": ("a.wav", wav.read_bytes())}, timeout=60)
    assert_error(r, 401, "asrbox passwd")
    assert not (daemon.store / "uploads" / "api").exists() or not any((daemon.store / "uploads" / "api").iterdir())
    voice = httpx.post(f"{u}/api/speakers/voices", data={"name": "X"}, files={"file": ("a.wav", wav.read_bytes())})
    assert_error(voice, 401, "asrbox passwd")  # enrolling a voice: the same auth as the rest of /api
    assert not (daemon.store / "uploads" / "voices").exists()
    assert_error(httpx.get(f"{u}/metrics", timeout=30), 401)
    assert_error(httpx.get(f"{u}/api/me", timeout=30), 401)
    assert_error(httpx.post(f"{u}/api/login", json={"password": "whatever1"}, timeout=30), 401, "asrbox passwd")


def test_api_keys_with_the_openai_client(daemon: HttpDaemon) -> None:
    from openai import AuthenticationError, OpenAI

    made = daemon.asrbox("keys", "create", "ci tests")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("asrbox_") and len(key) > 40
    listed = daemon.asrbox("keys", "list")
    assert "ci tests" in listed.stdout and key not in listed.stdout  # only the hash is kept
    kid = made.stderr.split("key ", 1)[1].split()[0]

    client = OpenAI(base_url=f"{daemon.url}/v1", api_key=key, max_retries=0, timeout=300)
    assert [m.id for m in client.models.list().data] == ["whisper-base-int8"]
    wav, _ = eval_clip("en_jfk")
    with wav.open("rb") as fh:
        assert "ask not" in client.audio.transcriptions.create(model="whisper-1", file=fh).text
    me = httpx.get(f"{daemon.url}/api/me", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    assert me == {"ok": True, "auth": "key", "csrf": None}
    # a key needs no CSRF token (it is not sent by a browser on its own)
    put = httpx.put(
        f"{daemon.url}/api/hotwords", json={"terms": ["asrbox"]}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert put.status_code == 200

    wrong = OpenAI(base_url=f"{daemon.url}/v1", api_key="asrbox_not-a-key", max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.models.list()
    assert_error(httpx.get(f"{daemon.url}/api/state", headers={"Authorization": "Bearer nope"}, timeout=30), 401, "key")

    revoked = daemon.asrbox("keys", "revoke", kid)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(AuthenticationError):
        client.models.list()
    again = daemon.asrbox("keys", "revoke", kid)
    assert again.returncode != 0 and "no live key" in again.stderr and "Traceback" not in again.stderr


def test_password_login_session_csrf_and_flood(daemon: HttpDaemon) -> None:
    u = daemon.url
    short = daemon.asrbox("passwd", stdin="short\n")
    assert short.returncode != 0 and "at least" in short.stderr
    done = daemon.asrbox("passwd", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    pw_file = daemon.workdir / "admin.pw"
    assert pw_file.read_text().startswith("$argon2") and PASSWORD not in pw_file.read_text()
    assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
    secret = daemon.store / "http_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600

    with httpx.Client(base_url=u, timeout=30) as browser:
        assert_error(browser.post("/api/login", json={"password": "wrong password"}), 401, "wrong password")
        assert_error(browser.post("/api/login", json={"pass": PASSWORD}), 422, "password")
        ok = browser.post("/api/login", json={"password": PASSWORD})
        assert ok.status_code == 200 and "asrbox_session" in ok.cookies
        set_cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        csrf = ok.json()["csrf"]
        assert browser.get("/api/me").json() == {"ok": True, "auth": "session", "csrf": csrf}
        assert browser.get("/api/state").status_code == 200
        assert_error(browser.put("/api/hotwords", json={"terms": []}), 403, "x-csrf-token")
        assert_error(browser.put("/api/hotwords", json={"terms": []}, headers={"X-CSRF-Token": "forged"}), 403)
        assert browser.put("/api/hotwords", json={"terms": []}, headers={"X-CSRF-Token": csrf}).status_code == 200
        forged = httpx.get(f"{u}/api/state", cookies={"asrbox_session": ok.cookies["asrbox_session"] + "x"}, timeout=30)
        assert_error(forged, 401)
        stolen = ok.cookies["asrbox_session"]

        # a new password ends every session
        assert daemon.asrbox("passwd", stdin=PASSWORD + "!\n").returncode == 0
        assert_error(httpx.get(f"{u}/api/state", cookies={"asrbox_session": stolen}, timeout=30), 401)
        assert browser.post("/api/logout").status_code == 200

        # flood: 5 failures a minute from one address, then 429 even for the right password
        codes = [browser.post("/api/login", json={"password": f"guess {i}"}).status_code for i in range(6)]
        allowed = codes.index(429)  # 4 if the wrong password above is still within the minute, else 5
        assert allowed in (4, 5) and codes == [401] * allowed + [429] * (6 - allowed), codes
        assert_error(browser.post("/api/login", json={"password": PASSWORD + "!"}), 429, "too many", "try again")
