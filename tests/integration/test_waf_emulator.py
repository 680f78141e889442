"""The emulator's WAF: AWS WAF's limits (10,000 addresses a set, one write of an action a second),
its lock tokens, the stack's IP sets made from template.yaml, and a second writer racing ours."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from autoblock_local import emulator
from autoblock_local.emulator import REGION, WAF_ADDRESSES_PER_SET, WAF_WRITE_INTERVAL, Stack
from tests.support import iam
from tests.support.faults import FOREIGN_V4, Faults


def addresses(count: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32" for i in range(count)]


def error(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    found = raised.value.response["Error"]
    return {"Code": str(found.get("Code")), "Message": str(found.get("Message"))}


def wait_out_the_rate() -> None:
    time.sleep(WAF_WRITE_INTERVAL + 0.05)


@pytest.fixture
def waf(deploy: Callable[..., Stack]) -> Stack:
    return deploy(WafScope="REGIONAL", WafIpSetsPerFamily=2)


def update(stack: Stack, name: str, wanted: list[str], token: str | None = None) -> Any:
    found = stack.waf_set(name)
    token = token or stack.waf_read(found)[1]
    return boto3.client("wafv2", region_name=REGION).update_ip_set(
        Name=found.name, Scope=found.scope, Id=found.id, Addresses=wanted, LockToken=token
    )


def test_a_set_holds_ten_thousand_addresses_and_the_ten_thousand_and_first_is_refused_as_aws_does(
    waf: Stack,
) -> None:
    update(waf, "autoblock-v4-1", addresses(WAF_ADDRESSES_PER_SET))
    assert len(waf.waf_addresses("autoblock-v4-1")) == 10_000
    wait_out_the_rate()

    refused = error(lambda: update(waf, "autoblock-v4-1", addresses(WAF_ADDRESSES_PER_SET + 1)))

    assert refused["Code"] == "WAFLimitsExceededException"
    assert "10000 addresses (10001 given)" in refused["Message"]
    assert len(waf.waf_addresses("autoblock-v4-1")) == 10_000
    wafv2 = boto3.client("wafv2", region_name=REGION)
    created = error(
        lambda: wafv2.create_ip_set(
            Name="too-big", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=addresses(10_001)
        )
    )
    assert created["Code"] == "WAFLimitsExceededException"


def test_a_second_update_within_a_second_is_throttled_and_one_a_second_later_is_accepted(waf: Stack) -> None:
    # Given: an update just made (on another set: the rate is per account and Region, not per set)
    update(waf, "autoblock-v4-2", ["192.0.2.1/32"])

    # When
    throttled = error(lambda: update(waf, "autoblock-v4-1", ["192.0.2.2/32"]))

    # Then
    assert throttled["Code"] == "WAFLimitsExceededException"
    assert "request rate was exceeded" in throttled["Message"]
    assert waf.waf_addresses("autoblock-v4-1") == []
    wait_out_the_rate()
    update(waf, "autoblock-v4-1", ["192.0.2.2/32"])
    assert waf.waf_addresses("autoblock-v4-1") == ["192.0.2.2/32"]
    writes = [(w.action, w.name, w.outcome, w.throttled) for w in emulator.WAF_WRITES if w.paced]
    assert writes == [
        ("UpdateIPSet", "autoblock-v4-2", "ok", False),
        ("UpdateIPSet", "autoblock-v4-1", "WAFLimitsExceededException", True),
        ("UpdateIPSet", "autoblock-v4-1", "ok", False),
    ]


def test_the_rate_window_is_the_module_constant(waf: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulator, "WAF_WRITE_INTERVAL", 0.0)  # e.g. a benchmark that measures our pacing alone

    for n in range(3):
        update(waf, "autoblock-v6-1", [f"2001:db8::{n}/128"])

    assert waf.waf_addresses("autoblock-v6-1") == ["2001:db8::2/128"]


def test_an_update_with_a_stale_lock_token_is_refused(waf: Stack) -> None:
    _, stale = waf.waf_read("autoblock-v4-1")
    update(waf, "autoblock-v4-1", ["192.0.2.1/32"], token=stale)
    wait_out_the_rate()

    refused = error(lambda: update(waf, "autoblock-v4-1", ["192.0.2.9/32"], token=stale))

    assert refused["Code"] == "WAFOptimisticLockException"
    assert waf.waf_addresses("autoblock-v4-1") == ["192.0.2.1/32"]


def test_of_threads_updating_with_the_same_token_only_one_wins(waf: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulator, "WAF_WRITE_INTERVAL", 0.0)
    _, token = waf.waf_read("autoblock-v4-1")
    outcomes: list[str] = []

    def write(n: int) -> None:
        try:
            update(waf, "autoblock-v4-1", [f"192.0.2.{n}/32"], token=token)
            outcomes.append("ok")
        except ClientError as refused:
            outcomes.append(refused.response["Error"]["Code"])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["WAFOptimisticLockException"] * 7 + ["ok"]


def test_deploy_with_waf_creates_the_template_s_sets_and_names_them_to_the_functions(waf: Stack) -> None:
    names = ["autoblock-v4-1", "autoblock-v4-2", "autoblock-v6-1", "autoblock-v6-2"]
    assert sorted(s.name for s in waf.waf_sets) == names
    listed = boto3.client("wafv2", region_name=REGION).list_ip_sets(Scope="REGIONAL")["IPSets"]
    assert sorted(s["Name"] for s in listed) == names
    entries = [e for e in waf.env["WAF_IP_SETS"].split(",") if e]
    assert sorted(entries) == sorted(f"{s.family}:{s.name}:{s.id}" for s in waf.waf_sets)
    assert waf.env["WAF_SCOPE"] == "REGIONAL"
    assert (waf.env["DEFAULT_TARGETS"], waf.env["GUARDDUTY_TARGETS"]) == ("nacl", "nacl")
    assert waf.waf_set(6, 2).name == "autoblock-v6-2"
    assert waf.refs["WafIpSetV6x2.Arn"] == waf.waf_set("autoblock-v6-2").arn
    assert waf.waf_fill() == dict.fromkeys(names, 0)
    assert not [w for w in emulator.WAF_WRITES if w.paced]  # set-up spends none of our rate


def test_the_emulator_records_what_each_update_gave_its_set_and_when(waf: Stack) -> None:
    before = time.time()
    update(waf, "autoblock-v6-2", ["2001:db8::7/128", "2001:db8::9/128"])

    (write,) = [w for w in emulator.WAF_WRITES if w.paced]
    assert (write.action, write.name, write.outcome) == ("UpdateIPSet", "autoblock-v6-2", "ok")
    assert write.addresses == ("2001:db8::7/128", "2001:db8::9/128")
    assert before <= write.done <= time.time()
    assert waf.waf_addresses(6, 2) == ["2001:db8::7/128", "2001:db8::9/128"]


def test_cloudfront_scope_sets_are_global_in_us_east_1(deploy: Callable[..., Stack]) -> None:
    stack = deploy(WafScope="CLOUDFRONT")
    update(stack, "autoblock-v4-1", ["192.0.2.5/32"])
    assert stack.waf_addresses(4) == ["192.0.2.5/32"]

    assert [(s.name, s.scope, s.region) for s in stack.waf_sets] == [
        ("autoblock-v4-1", "CLOUDFRONT", "us-east-1"),
        ("autoblock-v6-1", "CLOUDFRONT", "us-east-1"),
    ]
    assert all(":global/ipset/" in s.arn for s in stack.waf_sets)
    assert stack.env["WAF_SCOPE"] == "CLOUDFRONT"


def test_without_waf_the_stack_has_no_sets(stack: Stack) -> None:
    assert stack.waf_sets == []
    assert boto3.client("wafv2", region_name=REGION).list_ip_sets(Scope="REGIONAL")["IPSets"] == []
    assert [e for e in stack.env["WAF_IP_SETS"].split(",") if e] == []


def test_a_racing_writer_makes_our_next_update_fail_and_its_address_stays(waf: Stack, fault: Faults) -> None:
    # Given: our read of the set
    ours = boto3.client("wafv2", region_name=REGION)
    found = waf.waf_set(4)
    token = ours.get_ip_set(Name=found.name, Scope=found.scope, Id=found.id)["LockToken"]

    # When: another writer updates the set before our update
    with fault.racing_writer(waf, found) as race:
        ours = boto3.client("wafv2", region_name=REGION)  # a client made inside, as our code's are
        refused = error(
            lambda: ours.update_ip_set(
                Name=found.name, Scope=found.scope, Id=found.id, Addresses=["192.0.2.1/32"], LockToken=token
            )
        )
        # Then: ours fails on the lock; the foreign address is there; the next attempt is not raced
        assert refused["Code"] == "WAFOptimisticLockException"
        assert race.updates == [(found.name, FOREIGN_V4)]
        assert waf.waf_addresses(found) == [FOREIGN_V4]
        wait_out_the_rate()
        addresses, token = waf.waf_read(found)
        ours.update_ip_set(
            Name=found.name, Scope=found.scope, Id=found.id, Addresses=[*addresses, "192.0.2.1/32"], LockToken=token
        )
    assert waf.waf_addresses(found) == [FOREIGN_V4, "192.0.2.1/32"]
    assert race.updates == [(found.name, FOREIGN_V4)]


def test_a_racing_writer_on_one_set_leaves_the_others_alone(waf: Stack, fault: Faults) -> None:
    ours = boto3.client("wafv2", region_name=REGION)
    with fault.racing_writer(waf, "autoblock-v6-1", times=-1) as race:
        other = waf.waf_set("autoblock-v4-2")
        _, token = waf.waf_read(other)
        ours = boto3.client("wafv2", region_name=REGION)
        ours.update_ip_set(Name=other.name, Scope=other.scope, Id=other.id, Addresses=[], LockToken=token)

    assert race.updates == []


def test_the_functions_policies_allow_the_mapped_calls_on_the_stack_s_own_sets_only(waf: Stack) -> None:
    foreign = boto3.client("wafv2", region_name=REGION).create_ip_set(
        Name="customer-allowlist", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[]
    )["Summary"]
    for role in ("ApiFunctionRole", "TaskFunctionRole", "SweeperFunctionRole"):
        own = iam.statements(iam.roles()[role], waf.refs)
        for operation in ("GetIPSet", "UpdateIPSet"):
            for found in waf.waf_sets:
                ids = {"Name": found.name, "Id": found.id, "Scope": found.scope}
                (asked,) = iam.requests("WAFV2", operation, ids, REGION, emulator.ACCOUNT)
                assert iam.evaluate(own, asked.action, asked.resource, {}).allowed, (role, operation, found.name)
            ids = {"Name": foreign["Name"], "Id": foreign["Id"], "Scope": "REGIONAL"}
            (asked,) = iam.requests("WAFV2", operation, ids, REGION, emulator.ACCOUNT)
            assert not iam.evaluate(own, asked.action, asked.resource, {}).allowed, (role, operation)
