"""The stack's WAF IP sets: the only code that reads or writes them.

A set's desired contents are in the table, never in memory: one item per address it is to hold,
``WAFSET#<set name>`` / ``<cidr>``, written in the transaction that creates the block (so the table
never says a block is in a set it is not meant to be in), deleted when the block is released. Beside
them, the set's summary ``WAFSET#<set name>`` / ``#SET``:

* ``count``: addresses it is to hold; the create transaction's condition keeps it at 10,000 at most;
* ``gen``: bumped by every join and leave; ``applied_gen``: the ``gen`` whose contents the set is
  known to hold (the last successful ``UpdateIPSet`` wrote every address joined up to it);
* ``applied_hash``: a digest of what that update wrote (the sweeper compares it with the set);
* ``lease_owner`` / ``lease_until``: the one writer of the set, for LEASE_SECONDS at most.

``flush`` is how a change reaches WAF. Whoever needs it (the Apply task of a new block, the release
of an ended one) notes the set's ``gen`` after its own change and waits until ``applied_gen`` reaches
it. If nobody is writing, it takes the lease and writes: it reads the set's members from the table,
reads the set's lock token, and replaces the set's contents in one ``UpdateIPSet``. Every change
that lands while a writer works is written by the next one, so updates coalesce by themselves: a
burst of 5,000 blocks needs a handful of updates, not 5,000. On ``WAFOptimisticLockException``
(someone changed the set since our read) the writer reads the table and the set again and computes
the list anew: it never resends a list computed before the conflict. Writers pace themselves
through one item, ``WAFRATE`` / ``WAFRATE`` (``next_at``, epoch ms): a writer takes the turn a
little before it comes (PACE_LEAD_MS), holds it while it reads, sends its update when the turn
comes, then sets the next turn UPDATE_SPACING_MS after the moment its update was answered (WAF
allows about one per second per account and Region). WAF's throttling is treated as transient.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from autoblock.dal.aws import CONFIG, error_code, translated
from autoblock.dal.items import Items, from_wire, plain
from autoblock.errors import TransientAwsError
from autoblock.models import WAF_SET_LIMIT, Block, WafSet

SUMMARY = "#SET"
RATE_KEY = {"pk": "WAFRATE", "sk": "WAFRATE"}
UPDATE_SPACING_MS = 1050  # WAF: about one Create/Update/Put call per second per account and Region
PACE_HOLD_MS = 5000  # a writer holds its turn while it reads and writes; a hold lapses after this
PACE_CHECK_MS = 250  # a writer waiting for a held turn looks again this often
PACE_LEAD_MS = 700  # a writer takes its turn this early, reads meanwhile, and sends when the turn comes
EXTRA_WRITES = 8  # a writer writes again, at most this often, while changes keep arriving,
# and only within the first half of its lease: a lease that lapsed mid-write lets a second writer in
LEASE_SECONDS = 20  # a writer that takes longer than this is presumed dead
FLUSH_SECONDS = 25  # how long a change waits for its update before the task is retried
POLL_SECONDS = 0.5  # a waiter looks again after 0.25-0.75 s at first (an update takes about a second),
POLL_MAX_SECONDS = 1.5  # then less often: at most every 0.75-2.25 s
GET_SPACING_SECONDS = 0.25  # the sweeper's GetIPSet calls: WAF allows about 5 Get calls a second
LOCK_ATTEMPTS = 6  # WAFOptimisticLockException or throttling: read again and recompute, this many times
# What WAF answers when its rate is exceeded (and the generic throttling codes).
THROTTLED = frozenset({"WAFLimitsExceededException", "ThrottlingException", "TooManyRequestsException"})


def set_pk(name: str) -> str:
    return f"WAFSET#{name}"


def digest(addresses: Iterable[str]) -> str:
    """What a set holds, as one short string (the sweeper's cheap comparison)."""
    return hashlib.sha256("\n".join(sorted(addresses)).encode()).hexdigest()[:32]


def normal(address: str) -> str:
    return ipaddress.ip_network(address, strict=False).compressed


def join_writes(table_name: str, block: Block) -> list[dict[str, Any]]:
    """The two items of a block's create transaction that put its address in its set: the member,
    and the summary's count and generation (refused once the set holds WAF_SET_LIMIT)."""
    assert block.waf_set is not None
    pk = set_pk(block.waf_set)
    return [
        {
            "Put": {
                "TableName": table_name,
                "Item": {"pk": pk, "sk": block.cidr, "block_id": block.id, "expires_at": block.expires_at},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": table_name,
                "Key": {"pk": pk, "sk": SUMMARY},
                "UpdateExpression": "ADD #count :one, gen :one",
                "ConditionExpression": "attribute_not_exists(#count) OR #count < :limit",
                "ExpressionAttributeNames": {"#count": "count"},
                "ExpressionAttributeValues": {":one": 1, ":limit": WAF_SET_LIMIT},
            }
        },
    ]


def extend_writes(table_name: str, block: Block, expires_at: int) -> list[dict[str, Any]]:
    """The items of a block's extend transaction that move its member's expiry with the block's (a
    writer leaves out members whose expiry has passed, so the two must never disagree), and bump
    the set's generation: an update made after the old expiry left the address out, and the next
    one must put it back."""
    assert block.waf_set is not None
    pk = set_pk(block.waf_set)
    return [
        {
            "Update": {
                "TableName": table_name,
                "Key": {"pk": pk, "sk": block.cidr},
                "UpdateExpression": "SET expires_at = :e",
                "ConditionExpression": "block_id = :id",
                "ExpressionAttributeValues": {":e": expires_at, ":id": block.id},
            }
        },
        {
            "Update": {
                "TableName": table_name,
                "Key": {"pk": pk, "sk": SUMMARY},
                "UpdateExpression": "ADD gen :one",
                "ExpressionAttributeValues": {":one": 1},
            }
        },
    ]


@dataclass(frozen=True)
class Summary:
    count: int = 0
    gen: int = 0
    applied_gen: int = 0
    applied_hash: str = ""
    lease_until: float = 0

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> Summary:
        if not item:
            return cls()
        return cls(
            count=int(item.get("count", 0)),
            gen=int(item.get("gen", 0)),
            applied_gen=int(item.get("applied_gen", 0)),
            applied_hash=str(item.get("applied_hash", "")),
            lease_until=float(item.get("lease_until", 0)),
        )


@dataclass(frozen=True)
class Drift:
    """A set found holding something else than the table says (the sweeper's repair)."""

    ip_set: str
    removed: list[str]  # addresses it held that no live block of ours wants there
    restored: list[str]  # active blocks' addresses it had lost


@cache
def _wafv2(region: str) -> Any:
    return boto3.client("wafv2", region_name=region, config=CONFIG)


class WafSets(Items):
    def __init__(
        self,
        table_name: str,
        sets: Sequence[WafSet],
        scope: str,
        region: str,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(table_name)
        self.sets = {s.name: s for s in sets}
        self.scope = scope
        self.region = region
        self.now = now
        self.sleep = sleep

    @property
    def wafv2(self) -> Any:
        return _wafv2(self.region)

    # -- the table's side ---------------------------------------------------------------------------

    def summaries(self) -> dict[str, Summary]:
        """Every set's summary, in one BatchGetItem."""
        if not self.sets:
            return {}
        keys = [{"pk": set_pk(name), "sk": SUMMARY} for name in self.sets]
        request: dict[str, Any] = {self.name: {"Keys": keys, "ConsistentRead": True}}
        found: dict[str, Summary] = {}
        while request:
            with translated("BatchGetItem WAF set summaries"):
                answer = self.client.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(self.name, []):
                row = plain(item)
                found[str(row["pk"]).removeprefix("WAFSET#")] = Summary.of(row)
            request = answer.get("UnprocessedKeys") or {}
        return {name: found.get(name, Summary()) for name in self.sets}

    def _summary(self, name: str) -> Summary:
        with translated("GetItem WAF set summary"):
            item = self.table.get_item(Key={"pk": set_pk(name), "sk": SUMMARY}, ConsistentRead=True).get("Item")
        return Summary.of(item)

    def members(self, name: str, as_of: float | None = None) -> tuple[list[str], float | None]:
        """The addresses the set is to hold at ``as_of`` (default: now), in one paginated Query: its
        members, less those whose expiry has passed by then (their release may not have run yet; an
        update need not wait for it); and the soonest expiry among those kept (None: none). A member
        from before members carried ``expires_at`` stays until its release takes it out."""
        condition = Key("pk").eq(set_pk(name))
        items = self.pages(
            "Query WAF set members", self.table.query, KeyConditionExpression=condition, ConsistentRead=True
        )
        now = max(self.now(), as_of or 0.0)
        kept = [i for i in items if i["sk"] != SUMMARY and ("expires_at" not in i or now < int(i["expires_at"]))]
        due = [int(i["expires_at"]) for i in kept if "expires_at" in i]
        return sorted(str(i["sk"]) for i in kept), min(due, default=None)

    def may_have_left_out(self, expires_at: int) -> bool:
        """Whether an update may already have left out a member that expires at ``expires_at``: a
        writer leaves out what is due by its turn, and reads up to PACE_LEAD_MS before it."""
        return expires_at <= self.now() + PACE_LEAD_MS / 1000

    def leave(self, block: Block) -> bool:
        """Take the block's address out of its set's desired contents (a released block); False when
        it was out already (a retry of the release)."""
        if block.waf_set is None:
            return False
        pk = set_pk(block.waf_set)
        writes = [
            {
                "Delete": {
                    "TableName": self.name,
                    "Key": {"pk": pk, "sk": block.cidr},
                    "ConditionExpression": "block_id = :id",
                    "ExpressionAttributeValues": {":id": block.id},
                }
            },
            {
                "Update": {
                    "TableName": self.name,
                    "Key": {"pk": pk, "sk": SUMMARY},
                    "UpdateExpression": "ADD #count :minus, gen :one",
                    "ExpressionAttributeNames": {"#count": "count"},
                    "ExpressionAttributeValues": {":minus": -1, ":one": 1},
                }
            },
        ]
        try:
            with translated("TransactWriteItems WAF set leave"):
                self.client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False  # the member is gone (or is another block's): nothing of ours to take out
            raise
        return True

    # -- the one writer -----------------------------------------------------------------------------

    def flush(self, name: str, timeout: float = FLUSH_SECONDS) -> None:
        """Return once the set holds what the table said when this was called; write it ourselves
        when no one else is. TransientAwsError after ``timeout`` (the task is retried).

        A writer that lets go of the lease reads the summary once more: a change that arrived as it
        finished (its owner saw the lease held and waits) is written by it at once, not when that
        owner next looks. So a waiter needs to look only now and then (POLL_SECONDS at first, less
        often as it waits, at most every POLL_MAX_SECONDS): a wave of expiries, each waiting on the
        one writer, does not flood the table with reads. Once its own change is written, a writer
        goes on writing others' for LEASE_SECONDS / 2 at most: its own task is waiting meanwhile."""
        deadline = self.now() + timeout
        serve_until = self.now() + LEASE_SECONDS / 2  # our own change done, we write others' this long
        target: int | None = None
        wrote = False
        for polls in itertools.count():
            summary = self._summary(name)
            if target is None:
                target = summary.gen
            done = summary.applied_gen >= target
            if done and not (wrote and summary.applied_gen < summary.gen):
                return
            now = self.now()
            if summary.lease_until < now and (not done or now + UPDATE_SPACING_MS / 1000 < serve_until):
                owner = uuid.uuid4().hex
                if self._lease(name, owner):
                    try:
                        self._write_while_changing(self.sets[name], owner, min(deadline, now + LEASE_SECONDS / 2))
                    finally:
                        self._unlease(name, owner)
                    wrote = True
                    continue
            if done:
                return  # what is still pending is another writer's, or its owners' once we stop serving
            if now > deadline:
                raise TransientAwsError(f"WAF IP set {name}: not updated within {timeout:.0f} s")
            self.sleep(min(POLL_SECONDS * 1.5**polls, POLL_MAX_SECONDS) * random.uniform(0.5, 1.5))

    def _write_while_changing(self, ip_set: WafSet, owner: str, deadline: float) -> None:
        """Write the set; then, while changes keep arriving (others' blocks, waiting on us) or one of
        its addresses falls due before another turn would come anyway, write again at the next paced
        turn rather than hand the lease over: a burst or a wave of expiries does not wait for a
        waiter to notice the free lease, nor a due address for its release to run. At most
        EXTRA_WRITES more, within ``deadline``."""
        written, due = self._write(ip_set, owner)[2:]
        for _ in range(EXTRA_WRITES):
            now = self.now()
            if now + UPDATE_SPACING_MS / 1000 > deadline:
                return
            if self._summary(ip_set.name).gen <= written:
                if due is None or due - now > UPDATE_SPACING_MS / 1000:
                    return
                self.sleep(max(0.0, due - now))
            written, due = self._write(ip_set, owner)[2:]

    def _update_if(self, what: str, key: dict[str, str], **update: Any) -> bool:
        """One conditional UpdateItem; False when its condition did not hold."""
        try:
            with translated(f"UpdateItem {what}"):
                self.table.update_item(Key=key, **update)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _lease(self, name: str, owner: str) -> bool:
        now = self.now()
        return self._update_if(
            "WAF writer lease",
            {"pk": set_pk(name), "sk": SUMMARY},
            UpdateExpression="SET lease_owner = :me, lease_until = :until",
            ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
            ExpressionAttributeValues={":me": owner, ":until": int(now + LEASE_SECONDS), ":now": int(now)},
        )

    def _unlease(self, name: str, owner: str) -> None:
        self._update_if(  # False: the lease lapsed and another writer holds it now
            "WAF writer lease",
            {"pk": set_pk(name), "sk": SUMMARY},
            UpdateExpression="REMOVE lease_owner, lease_until",
            ConditionExpression="lease_owner = :me",
            ExpressionAttributeValues={":me": owner},
        )

    def _pace(self) -> tuple[int, int]:
        """Take this stack's next turn to call UpdateIPSet, up to PACE_LEAD_MS before it comes, and
        hold it (PACE_HOLD_MS at most): (the hold's ``next_at``, for ``_pass_turn``; when the turn
        comes, epoch ms). The writer reads the table and the set meanwhile and sends when the turn
        comes, so an update leaves with what is due by then, and the next turn is spaced from when
        the update was answered: reads that take longer one time than the next never bring two
        calls closer than WAF allows."""
        while True:
            now_ms = int(self.now() * 1000)
            hold = now_ms + PACE_HOLD_MS
            try:
                with translated("UpdateItem WAF update pacing"):
                    answer = self.table.update_item(
                        Key=RATE_KEY,
                        UpdateExpression="SET next_at = :hold",
                        ConditionExpression="attribute_not_exists(next_at) OR next_at <= :lead",
                        ExpressionAttributeValues={":hold": hold, ":lead": now_ms + PACE_LEAD_MS},
                        ReturnValues="UPDATED_OLD",
                    )
                return hold, max(now_ms, int(answer.get("Attributes", {}).get("next_at", now_ms)))
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                item = cast(dict[str, Any], exc.response.get("Item") or {})
                old = plain(from_wire(item))  # an error's item comes typed
                wait_ms = int(old.get("next_at", now_ms + 100)) - PACE_LEAD_MS - now_ms
                if wait_ms > UPDATE_SPACING_MS:  # a turn held by a writer at work: it may pass it on early
                    wait_ms = PACE_CHECK_MS
                self.sleep(max(wait_ms, 10) / 1000)

    def _pass_turn(self, hold: int, turn_ms: int, answered_ms: int | None) -> None:
        """Give the turn on: the next UpdateIPSet no sooner than UPDATE_SPACING_MS after ours was
        answered (so after it reached WAF); when we sent none, the turn we were given, unused (it may
        still be ahead: we took it early). A hold that lapsed (another writer's turn began) is left
        alone."""
        next_at = turn_ms if answered_ms is None else answered_ms + UPDATE_SPACING_MS
        self._update_if(
            "WAF update pacing",
            RATE_KEY,
            UpdateExpression="SET next_at = :next",
            ConditionExpression="next_at = :hold",
            ExpressionAttributeValues={":next": next_at, ":hold": hold},
        )

    def _write(self, ip_set: WafSet, owner: str) -> tuple[list[str], list[str], int, float | None]:
        """Make the set hold the table's members; (what it held, what it holds now, the generation
        that is, the soonest expiry among what it holds). Called when the set is known to need a
        change: it takes the stack's paced turn first (a little before it comes), then reads the
        summary, the members as of the turn and the set, and sends when the turn comes: whatever
        changed while it waited goes out in this update. A call sent spends the turn, whatever its
        outcome; a set found right already passes the turn on at once."""
        first: list[str] | None = None
        for attempt in range(LOCK_ATTEMPTS):
            hold, turn_ms = self._pace()
            answered_ms: int | None = None
            try:
                summary = self._summary(ip_set.name)  # first: every member joined up to its gen is in the Query
                desired, due = self.members(ip_set.name, as_of=turn_ms / 1000)
                with translated("GetIPSet"):
                    got = self.wafv2.get_ip_set(Name=ip_set.name, Scope=self.scope, Id=ip_set.id)
                held = sorted(normal(a) for a in got["IPSet"].get("Addresses", []))
                first = held if first is None else first
                if held != desired:
                    self.sleep(max(0.0, turn_ms / 1000 - self.now()))
                    try:
                        with translated("UpdateIPSet"):
                            self.wafv2.update_ip_set(
                                Name=ip_set.name,
                                Scope=self.scope,
                                Id=ip_set.id,
                                Addresses=desired,
                                LockToken=got["LockToken"],
                            )
                    finally:
                        answered_ms = int(self.now() * 1000)
            except (TransientAwsError, ClientError) as exc:
                code = error_code(exc) if isinstance(exc, ClientError) else "transient"
                if answered_ms is None or code not in THROTTLED | {"WAFOptimisticLockException", "transient"}:
                    raise  # a read failed (the task is retried), or WAF refused the update for good
                if code != "WAFOptimisticLockException":  # throttled: WAF's rate is shared with others
                    self.sleep(min(2.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
                continue  # else changed since our read: read the table and the set again
            finally:
                self._pass_turn(hold, turn_ms, answered_ms)
            self._applied(ip_set.name, owner, summary.gen, digest(desired))
            return first, desired, summary.gen, due
        raise TransientAwsError(f"WAF IP set {ip_set.name}: not updated after {LOCK_ATTEMPTS} attempts")

    def _applied(self, name: str, owner: str, gen: int, written: str) -> None:
        self._update_if(  # False: another writer recorded a later generation, or our lease lapsed
            "WAF set applied",
            {"pk": set_pk(name), "sk": SUMMARY},
            UpdateExpression="SET applied_gen = :g, applied_hash = :h",
            ConditionExpression="lease_owner = :me AND (attribute_not_exists(applied_gen) OR applied_gen <= :g)",
            ExpressionAttributeValues={":g": gen, ":h": written, ":me": owner},
        )

    # -- the sweeper's side -------------------------------------------------------------------------

    def reconcile(self) -> tuple[list[Drift], dict[str, int]]:
        """Make each of the stack's sets hold exactly the table's members, both ways: an address no
        block of ours wants is removed, an active block's missing address restored. A set whose
        contents match the digest of its last update, with no change since, costs one GetIPSet and
        its share of one BatchGetItem: the sweep never reads the members of a set that is right.
        Answers the repairs and each set's fill (addresses it is to hold)."""
        drifts: list[Drift] = []
        summaries = self.summaries()
        for i, (name, summary) in enumerate(summaries.items()):
            ip_set = self.sets[name]
            if i:
                self.sleep(GET_SPACING_SECONDS)
            try:
                with translated("GetIPSet"):
                    got = self.wafv2.get_ip_set(Name=ip_set.name, Scope=self.scope, Id=ip_set.id)
            except (TransientAwsError, ClientError) as exc:
                if isinstance(exc, ClientError) and error_code(exc) not in THROTTLED:
                    raise
                continue  # throttled (or WAF is unwell): this set waits for the next sweep
            held = digest(normal(a) for a in got["IPSet"].get("Addresses", []))
            expected = summary.applied_hash or digest([])
            if summary.lease_until >= self.now() or (held == expected and summary.applied_gen >= summary.gen):
                continue  # a writer is at work, or the set is right
            owner = uuid.uuid4().hex
            if not self._lease(name, owner):
                continue
            try:
                before, after = self._write(ip_set, owner)[:2]
            finally:
                self._unlease(name, owner)
            drift = Drift(name, sorted(set(before) - set(after)), sorted(set(after) - set(before)))
            if drift.removed or drift.restored:
                drifts.append(drift)
        return drifts, {name: summary.count for name, summary in summaries.items()}
