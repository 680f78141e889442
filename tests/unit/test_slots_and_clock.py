from datetime import UTC, datetime

import pytest

from autoblock.logic import clock
from autoblock.logic.slots import RuleRange, expand_directions, split_slot_key, targets


def test_the_lowest_free_number_of_the_range_is_chosen() -> None:
    rules = RuleRange(start=10, limit=5)
    assert rules.first_free(set()) == 10
    assert rules.first_free({10, 11, 13}) == 12
    assert rules.first_free({10, 11, 12, 13, 14}) is None
    assert rules.first_free({5, 9, 15, 100}) == 10  # numbers outside the range never count


def test_the_range_is_inclusive_and_owns_nothing_else() -> None:
    rules = RuleRange(start=10, limit=5)
    assert list(rules.numbers()) == [10, 11, 12, 13, 14]
    assert 9 not in rules and 15 not in rules and 14 in rules and 10 in rules


@pytest.mark.parametrize(("start", "limit"), [(0, 5), (1, 0), (32760, 10)])
def test_a_range_outside_the_nacl_rule_numbers_is_refused(start: int, limit: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        RuleRange(start, limit)


def test_both_means_ingress_and_egress_in_every_nacl() -> None:
    assert expand_directions("both") == ("ingress", "egress")
    assert expand_directions("egress") == ("egress",)
    assert targets(["acl-1", "acl-2"], "both") == ["acl-1|ingress", "acl-1|egress", "acl-2|ingress", "acl-2|egress"]
    assert split_slot_key("acl-1|egress") == ("acl-1", "egress")


def test_expiry_rounds_up_to_the_next_whole_second() -> None:
    assert clock.expiry(1000.0, 60) == 1060
    assert clock.expiry(1000.2, 60) == 1061


def test_an_extension_never_shortens_a_block() -> None:
    assert clock.later(2000, 1500) == 2000
    assert clock.later(2000, 2500) == 2500


def test_timestamps_for_the_wait_state_are_utc_and_end_in_z() -> None:
    epoch = int(datetime(2026, 11, 28, 13, 5, 9, tzinfo=UTC).timestamp())
    assert clock.iso_z(epoch) == "2026-11-28T13:05:09Z"
    assert clock.seconds_left(epoch, epoch - 2.5) == 3
    assert clock.seconds_left(epoch, epoch + 1) == 0
