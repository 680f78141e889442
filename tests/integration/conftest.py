"""Fixtures of the integration tier: the emulated stack of autoblock_local/emulator.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from autoblock_local.emulator import (
    ACCOUNT,
    ASL_PATH,
    EVENTS,
    FOREIGN_RULES,
    REGION,
    ROOT,
    TOKEN,
    Stack,
    deploy_stack,
    emulated_aws,
    load_template,
    resolve,
    substitute_asl,
    wait_until,
)
from tests.support.faults import Faults

__all__ = [
    "ACCOUNT",
    "ASL_PATH",
    "EVENTS",
    "FOREIGN_RULES",
    "REGION",
    "ROOT",
    "TOKEN",
    "Faults",
    "Stack",
    "load_template",
    "resolve",
    "substitute_asl",
    "wait_until",
]


@pytest.fixture
def aws() -> Iterator[None]:
    with emulated_aws():
        yield


@pytest.fixture
def fault(aws: None) -> Iterator[Faults]:
    faults = Faults()
    yield faults
    faults.clear()


@pytest.fixture
def deploy(aws: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Stack]:
    """deploy(nacls=2, **parameters) creates the stack's resources on moto from template.yaml."""

    def _deploy(nacls: int = 2, **overrides: Any) -> Stack:
        return deploy_stack(monkeypatch.setenv, nacls, **overrides)

    return _deploy


@pytest.fixture
def stack(deploy: Callable[..., Stack]) -> Stack:
    return deploy()
