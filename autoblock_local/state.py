"""The local stacks' state files: one per running stack, keyed by its API port (standard library only:
the ``autoblock`` command reads them without the local stack's dependencies).

``${XDG_STATE_HOME:-~/.local/state}/autoblock/local-<port>.json`` holds the stack's URL, token, AWS
endpoint and pid (mode 0600), and its handlers' log is ``local-<port>.log`` beside it. A stack
removes only its own file when it stops; a file whose process is gone (a killed stack) is stale and
removed by whoever finds it. ``$AUTOBLOCK_LOCAL_STATE`` names one file instead (tests, scripts).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PATTERN = "local-*.json"


@dataclass(frozen=True)
class Found:
    path: Path
    state: dict[str, Any]

    @property
    def port(self) -> int | None:
        port = self.state.get("port")
        return port if isinstance(port, int) else None


def directory(env: Mapping[str, str]) -> Path:
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "autoblock"


def path_for(port: int, env: Mapping[str, str]) -> Path:
    """Where the stack serving the API on ``port`` writes its state."""
    if env.get("AUTOBLOCK_LOCAL_STATE"):
        return Path(env["AUTOBLOCK_LOCAL_STATE"])
    return directory(env) / f"local-{port}.json"


def log_path_for(state_path: Path) -> Path:
    return state_path.with_suffix(".log")


def alive(pid: Any) -> bool:
    """Whether a process with this pid exists (a state file without a pid is taken as alive)."""
    if pid is None:
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def read(path: Path) -> dict[str, Any] | None:
    """The state in ``path``; None when there is no such file. OSError/ValueError when unreadable."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return state if isinstance(state, dict) else {}


def running(env: Mapping[str, str]) -> list[Found]:
    """The state of every local stack whose process still runs, by port; stale files are removed."""
    if env.get("AUTOBLOCK_LOCAL_STATE"):
        candidates = [Path(env["AUTOBLOCK_LOCAL_STATE"])]
    else:
        candidates = sorted(directory(env).glob(PATTERN))
    found: list[Found] = []
    for path in candidates:
        try:
            state = read(path)
        except (OSError, ValueError):
            state = {}  # unreadable: the caller says so
        if state is None:
            continue
        if state and not alive(state.get("pid")):
            remove(path, state.get("pid"))
            continue
        found.append(Found(path, state))
    return sorted(found, key=lambda f: (f.port is None, f.port or 0, str(f.path)))


def remove(path: Path, pid: Any) -> None:
    """Remove ``path`` if it still belongs to ``pid`` (another stack may have written it since)."""
    try:
        current = read(path)
    except (OSError, ValueError):
        current = {}
    if current is not None and current.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()


def write(path: Path, state: dict[str, Any]) -> None:
    """Mode 0600 from the start: the file holds the token."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle)
    os.chmod(temporary, 0o600)  # an existing file keeps its old mode through O_CREAT
    os.replace(temporary, path)  # readers never see half a file
