"""`asrbox passwd` and `asrbox keys`: the HTTP face's credentials, set on the box itself.

The password is read from a terminal prompt (twice) or, when stdin is not a terminal, from its first line;
never from the command line. A new API key is printed once, on stdout; only its hash is kept.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from daemon.errors import AsrboxError
from daemon.http import passwords
from daemon.settings import DEFAULT_CONFIG_PATH, Settings, resolve_config_path
from daemon.store.db import Store
from daemon.store.keys import ApiKeys


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("New admin password: ")
        passwords.check_new(first)
        if getpass.getpass("Again: ") != first:
            raise AsrboxError("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def cmd_passwd(args: argparse.Namespace, settings: Settings) -> int:
    config = resolve_config_path(args.config if hasattr(args, "config") else None)
    path = passwords.writable_path(settings, config)
    password = _read_password()
    passwords.write_hash(path, password)
    print(f"asrbox: admin password set ({path}); a running daemon uses it at the next login", file=sys.stderr)
    if settings.http.password_file is None and path.parent == DEFAULT_CONFIG_PATH.parent:
        print("asrbox: the asrbox service reads it as a credential: systemctl restart asrbox", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    store = Store(Path(settings.store.path))
    try:
        keys = ApiKeys(store)
        if args.action == "create":
            try:
                row, key = keys.create(args.name)
            except ValueError as exc:
                raise AsrboxError(str(exc)) from None
            print(key)
            print(f"asrbox: key {row.id} ({row.name}) created; it is shown only now", file=sys.stderr)
        elif args.action == "list":
            for k in keys.list():
                print(json.dumps(k.as_dict(), ensure_ascii=False))
        else:
            if not keys.revoke(args.id):
                raise AsrboxError(f"no live key with id {args.id!r} (see `asrbox keys list`)")
            print(f"asrbox: key {args.id} revoked", file=sys.stderr)
    finally:
        store.close()
    return 0
