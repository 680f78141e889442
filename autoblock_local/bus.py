"""EventBridge on this machine: the template's EventBridgeRule events, on the emulated default bus.

moto matches an event against a rule's pattern but delivers only to some target types (SQS among
them, Step Functions not). Each rule of the template is created with its own pattern and state and
an SQS queue as its target; a poller hands what reaches the queue to the rule's real target, as
EventBridge would: the state machine, started with the whole event as its input.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from autoblock_local.emulator import ACCOUNT, REGION, resolve


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: dict[str, Any]
    enabled: bool
    target: str  # the template's logical id of the state machine or function the rule starts
    queue_url: str = ""


def rules(template: dict[str, Any], refs: dict[str, Any]) -> list[Rule]:
    """Every EventBridgeRule event in the template, its intrinsic functions resolved with ``refs``."""
    found = []
    for name, resource in template["Resources"].items():
        for spec in resource.get("Properties", {}).get("Events", {}).values():
            if spec["Type"] != "EventBridgeRule":
                continue
            # What decides which events reach the target; retries and the dead-letter queue are AWS's.
            props = {
                k: resolve(v, refs) for k, v in spec["Properties"].items() if k in ("RuleName", "Pattern", "State")
            }
            found.append(
                Rule(
                    name=str(props.get("RuleName") or f"{name}-rule"),
                    pattern=props["Pattern"],
                    enabled=props.get("State", "ENABLED") == "ENABLED",
                    target=name,
                )
            )
    return found


def install(found: list[Rule]) -> list[Rule]:
    """Create each rule on the default bus with an SQS queue as its target."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    installed = []
    for rule in found:
        queue_url = sqs.create_queue(QueueName=f"local-target-{rule.name}"[:80])["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name=rule.name,
            EventPattern=json.dumps(rule.pattern),
            State="ENABLED" if rule.enabled else "DISABLED",
        )
        events.put_targets(Rule=rule.name, Targets=[{"Id": "local-target", "Arn": arn}])
        installed.append(Rule(rule.name, rule.pattern, rule.enabled, rule.target, queue_url))
    return installed


def deliver_forever(
    installed: list[Rule], start: Callable[[Rule, dict[str, Any]], None], stop: threading.Event
) -> None:
    """Hand every event that reached a rule's queue to ``start`` until ``stop`` is set."""
    sqs = boto3.client("sqs", region_name=REGION)
    while not stop.is_set():
        idle = True
        for rule in installed:
            messages = sqs.receive_message(QueueUrl=rule.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            for message in messages:
                idle = False
                event = json.loads(message["Body"])
                event.setdefault("account", ACCOUNT)  # moto's delivered events leave it out
                start(rule, event)
                sqs.delete_message(QueueUrl=rule.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if idle:
            stop.wait(0.25)
