"""Rule-number arithmetic for the managed range (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from autoblock.logic import refs

DIRECTIONS = ("ingress", "egress")
NACL_MAX_RULE_NUMBER = 32766
FOREIGN = "foreign"  # holder of a quarantined rule number: an entry autoblock did not write sits there


@dataclass(frozen=True)
class RuleRange:
    """Rule numbers start … start+limit-1 in every NACL and direction: the only ones we touch."""

    start: int
    limit: int

    def __post_init__(self) -> None:
        if self.start < 1 or self.limit < 1 or self.start + self.limit - 1 > NACL_MAX_RULE_NUMBER:
            raise ValueError(f"rule range {self.start}+{self.limit} does not fit in 1..{NACL_MAX_RULE_NUMBER}")

    @property
    def end(self) -> int:
        return self.start + self.limit - 1

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and self.start <= number <= self.end

    def numbers(self) -> range:
        return range(self.start, self.end + 1)

    def first_free(self, taken: Collection[int]) -> int | None:
        """The lowest number of the range not in ``taken``, or None when the range is full."""
        return next((n for n in self.numbers() if n not in taken), None)


def expand_directions(direction: str) -> tuple[str, ...]:
    """'both' is ingress and egress; the others are themselves."""
    return DIRECTIONS if direction == "both" else (direction,)


def slot_key(nacl_id: str, direction: str) -> str:
    """The key of one (NACL, direction) in a block's ``rules`` map."""
    return f"{nacl_id}|{direction}"


def split_slot_key(key: str) -> tuple[str, str]:
    nacl_id, direction = key.split("|", 1)
    return nacl_id, direction


def slot_location(key: str) -> str:
    """The account and Region (``logic.refs`` location) of a slot key's NACL."""
    return refs.location_of(split_slot_key(key)[0])


def by_slot_location(rules: dict[str, int]) -> dict[str, dict[str, int]]:
    """A block's rule numbers, grouped by the account and Region of their NACL."""
    grouped: dict[str, dict[str, int]] = {}
    for key, number in rules.items():
        grouped.setdefault(slot_location(key), {})[key] = number
    return grouped


def targets(nacl_ids: Iterable[str], direction: str) -> list[str]:
    """Every (NACL, direction) slot key a block of ``direction`` needs."""
    return [slot_key(n, d) for n in nacl_ids for d in expand_directions(direction)]
