"""The local stack's view (autoblock_local/view.py) read from the emulated stack: where each block is
held and, on a stack with WAF, each IP set's fill."""

from __future__ import annotations

from collections.abc import Callable

from autoblock.handlers import wiring
from autoblock.models import BlockRequest
from autoblock_local import view
from tests.integration.conftest import Stack


def _block(ip: str, *targets: str) -> str:
    request = BlockRequest.model_validate({"ip": ip, **({"targets": list(targets)} if targets else {})})
    return wiring.lifecycle().open(request, "test").block.id


def test_without_waf_the_snapshot_has_no_waf_set(stack: Stack) -> None:
    _block("203.0.113.7")

    shot = view.snapshot(stack)

    assert [b.ip for b in shot.blocks] == ["203.0.113.7/32"]
    assert shot.waf_sets == [] and shot.waf_scope == "NONE"
    assert all(b.waf is None for b in shot.blocks)


def test_with_waf_the_snapshot_has_each_set_s_fill_and_each_block_s_set(deploy: Callable[..., Stack]) -> None:
    # Needs deploy_stack to create the template's IP sets (waf-emulator): until then this fails, saying so.
    stack = deploy(WafScope="REGIONAL")
    assert stack.env.get("WAF_IP_SETS"), "deploy_stack made no WAF IP set for WafScope=REGIONAL"
    _block("203.0.113.7", "waf")

    shot = view.snapshot(stack)

    assert shot.waf_scope == "REGIONAL"
    assert [(s.name, s.family, s.used, s.limit) for s in shot.waf_sets] == [
        ("autoblock-v4-1", 4, 1, 10_000),
        ("autoblock-v6-1", 6, 0, 10_000),
    ]
    [block] = shot.blocks
    assert block.waf is not None and block.waf.ip_set == "autoblock-v4-1"
    assert view._held(block) == "WAF autoblock-v4-1"
