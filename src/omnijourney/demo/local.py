"""The demo on this machine: its database file, its keys file, building it once and serving it again.

``omni demo`` builds into ``<path>.building`` and renames the file when every step is done, so a database at
``path`` is always a finished demo (an interrupted build leaves only the ``.building`` file, removed by the next
build). The keys are written beside it, readable by its owner only (0600), as a file a shell can source:
``. ./omni-demo.keys`` sets ``$API_KEY``, ``$WRITE_KEY`` (the web shop's) and ``OMNI_DATABASE_URL``. The database
keeps API keys hashed, so this file is how a returning user gets the admin key again; when it is missing or its
admin key no longer works, a new admin key is issued (the sources' write keys are stored in the database and
stay as they are).
"""

from __future__ import annotations

import os
import random
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omnijourney.auth.service import authenticate, create_key
from omnijourney.core.errors import OmniError
from omnijourney.db import Database
from omnijourney.demo import staff as demo_staff

DEFAULT_PATH = "omni-demo.db"
DEFAULT_SEED = 42
DEFAULT_PEOPLE = 3000
WEB_SOURCE = "Web shop"
_SUFFIXES = ("", "-wal", "-shm", "-journal")
_LINE = re.compile(r"^export ([A-Z0-9_]+)=(.*)$")


@dataclass
class DemoKeys:
    """What the keys file holds: how the demo was built and its keys."""

    seed: int | None
    people: int | None
    admin_key: str
    write_keys: dict[str, str] = field(default_factory=dict)  # source name -> write key
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (email, password): demo.staff


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def keys_path(path: Path) -> Path:
    """Where the keys of the demo at ``path`` are kept: ``omni-demo.db`` -> ``omni-demo.keys``."""
    return path.with_suffix(".keys")


def _variable(source_name: str) -> str:
    if source_name == WEB_SOURCE:
        return "WRITE_KEY"
    ascii_name = unicodedata.normalize("NFKD", source_name).encode("ascii", "ignore").decode()
    return "WRITE_KEY_" + re.sub(r"[^A-Z0-9]+", "_", ascii_name.upper()).strip("_")


def write_keys_file(path: Path, keys: DemoKeys) -> Path:
    """Write the keys of the demo at ``path`` beside it, readable and writable by the owner only."""
    target = keys_path(path)
    lines = [f"# Keys of the Omnijourney demo in {path.resolve()} (secrets: keep this file to yourself).",
             "# `. ./" + target.name + "` sets them in your shell: $API_KEY (admin), $WRITE_KEY (web shop), ...",
             f"export OMNI_DATABASE_URL={shlex.quote(sqlite_url(path))}",
             f"export OMNI_DEMO_SEED={keys.seed}", f"export OMNI_DEMO_PEOPLE={keys.people}",
             f"export API_KEY={shlex.quote(keys.admin_key)}"]
    for name, key in keys.write_keys.items():
        lines.append(f"# source {name!r}")
        lines.append(f"export {_variable(name)}={shlex.quote(key)}")
    for role, (email, password) in keys.logins.items():  # staff logins: POST /api/v1/session
        lines.append(f"# staff login, role {role}" + ("" if password else " (password changed by its owner)"))
        lines.append(f"export STAFF_{role.upper()}_EMAIL={shlex.quote(email)}")
        lines.append(f"export STAFF_{role.upper()}_PASSWORD={shlex.quote(password)}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return target


def read_keys_file(path: Path) -> DemoKeys | None:
    """The keys written beside the demo at ``path``, or None without a readable keys file."""
    try:
        text = keys_path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            parsed = shlex.split(m.group(2))
            values[m.group(1)] = parsed[0] if parsed else ""

    def number(name: str) -> int | None:
        return int(values[name]) if values.get(name, "").isdigit() else None

    if not values.get("API_KEY"):
        return None
    logins = {name[6:-6].lower(): (email, values.get(f"{name[:-6]}_PASSWORD", "")) for name, email in values.items()
              if name.startswith("STAFF_") and name.endswith("_EMAIL")}
    return DemoKeys(seed=number("OMNI_DEMO_SEED"), people=number("OMNI_DEMO_PEOPLE"), admin_key=values["API_KEY"],
                    logins=logins)


def _provider_state(path: Path) -> Path | None:
    """The file where the built-in test payment provider keeps its state for the demo database at ``path`` (it sits
    beside it, named after it), or None when it is kept elsewhere (``OMNI_PAYMENTS__TEST_PROVIDER_PATH``: shared by
    every database, nothing to move)."""
    from omnijourney.payments import providers

    conf = providers.settings()
    if conf.payments.test_provider_path or not conf.payments.test_provider:
        return None
    db = Database(sqlite_url(path))
    try:
        return Path(providers.simulator_path(conf, db))
    finally:
        db.dispose()


def _remove(path: Path) -> None:
    for suffix in _SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


Progress = Callable[[str, int], Callable[[int], None]]  # (step name, size) -> advance(n)


def build(path: Path, *, seed: int, people: int, progress: Progress) -> DemoKeys:
    """Build the demo retailer into ``path`` (replacing what is there) and write its keys file."""
    from omnijourney.demo.build import STEPS, DemoContext, built_now
    from omnijourney.migrate import upgrade

    building = Path(f"{path}.building")
    _remove(building)
    built_state, state = _provider_state(building), _provider_state(path)
    if built_state is not None:
        _remove(built_state)  # an interrupted build's charges
    db = Database(sqlite_url(building))
    try:
        upgrade(db.engine)
        ctx = DemoContext(db=db, seed=seed, people=people, now=built_now(), rng=random.Random(seed))
        for name, size, run in STEPS:
            run(ctx, progress(name, size(ctx)))
        logins = demo_staff.create(db)  # one account per role, with the store channels made
    finally:
        db.dispose()  # closes the last connection: SQLite folds its -wal file into the database
    _remove(path)
    keys_path(path).unlink(missing_ok=True)  # the old build's keys: they open nothing any more
    for suffix in _SUFFIXES:  # normally the file alone
        if Path(f"{building}{suffix}").exists():
            os.replace(f"{building}{suffix}", f"{path}{suffix}")
    if built_state is not None and state is not None:  # the test provider's book of the demo's card payments
        _remove(state)
        for suffix in _SUFFIXES:
            if Path(f"{built_state}{suffix}").exists():
                os.replace(f"{built_state}{suffix}", f"{state}{suffix}")
    keys = DemoKeys(seed=seed, people=people, admin_key=ctx.admin_key, write_keys=dict(ctx.write_keys),
                    logins=logins)
    write_keys_file(path, keys)
    return keys


def reopen(path: Path) -> tuple[DemoKeys, bool]:
    """The keys of the finished demo at ``path``: the keys file's admin key if it still opens the API, else a new
    admin key (``True``: it was issued now); the write keys as the database has them. Rewrites the keys file."""
    from omnijourney.tracking.sources import list_sources

    saved = read_keys_file(path)
    db = Database(sqlite_url(path))
    try:
        with db.transaction() as session:
            admin_key = saved.admin_key if saved else ""
            reissued = False
            try:
                if not authenticate(session, admin_key or None).allows("admin"):
                    raise OmniError("not an admin key")
            except OmniError:
                _, admin_key = create_key(session, name="demo admin", scopes=["admin"])
                reissued = True
            write_keys = {s.name: s.write_key for s in list_sources(session) if s.enabled}
        logins = demo_staff.ensure(db, saved.logins if saved else {})
    finally:
        db.dispose()
    keys = DemoKeys(seed=saved.seed if saved else None, people=saved.people if saved else None,
                    admin_key=admin_key, write_keys=write_keys, logins=logins)
    write_keys_file(path, keys)
    return keys, reissued
