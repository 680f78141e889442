"""Named domain errors.

Each class name is part of the contract with ``statemachines/block.asl.json``: the Lambda
runtime reports an unhandled exception under its class name, and the ASL retries
``TransientAwsError`` only. Every other error is a business outcome that is never retried.
``http_status`` is the status the API answers with; the mapping lives here and nowhere else.
"""

from __future__ import annotations


class AutoblockError(Exception):
    """Base of every error this package raises on purpose."""

    http_status = 500
    code = "internal_error"


class InvalidAddress(AutoblockError):
    """The address or CIDR is malformed."""

    http_status = 400
    code = "invalid_address"


class InvalidDuration(AutoblockError):
    """The duration is not a whole number of seconds within (0, MaxDurationSeconds]."""

    http_status = 400
    code = "invalid_duration"


class InvalidQuery(AutoblockError):
    """A query parameter is not what the route accepts (GET /history?ip= with a malformed address)."""

    http_status = 422
    code = "invalid_address"


class InvalidRequest(AutoblockError):
    """A body or query that does not match the route's model; ``fields`` names each field at fault."""

    http_status = 422
    code = "invalid_request"

    def __init__(self, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


class PolicyViolation(AutoblockError):
    """A well-formed address that autoblock must never block (never-block range, allowlist, prefix)."""

    http_status = 422
    code = "not_blockable"


class BlockNotFound(AutoblockError):
    http_status = 404
    code = "not_found"


class BlockConflict(AutoblockError):
    """The address is blocked in another direction, or its previous block is still being released."""

    http_status = 409
    code = "conflict"


class CapacityExceeded(AutoblockError):
    """Every rule number of the managed range is taken (WhenFull=reject, or nothing to evict)."""

    http_status = 503
    code = "capacity_exceeded"


class NaclQuotaExceeded(AutoblockError):
    """EC2 refused the entry because the NACL reached its rules-per-direction quota."""

    http_status = 503
    code = "nacl_quota_exceeded"


class TransientAwsError(AutoblockError):
    """Throttling, a 5xx or a timeout that outlived botocore's own retries: the ASL retries it."""

    http_status = 503
    code = "transient_aws_error"


class WorkflowError(AutoblockError):
    """The block could not be handed to the state machine."""

    http_status = 503
    code = "workflow_unavailable"


# Outcomes that end a block as "rejected" rather than "failed".
REJECTIONS = frozenset({"CapacityExceeded", "PolicyViolation", "NaclQuotaExceeded", "InvalidAddress"})


class MemberUnreachable(AutoblockError):
    """A member account's NACLs cannot be reached: its role is missing or refuses, or the NACL is
    gone. Not retried: the block is applied in the other accounts and this one is recorded failed."""

    http_status = 502
    code = "member_unreachable"

    def __init__(self, location: str, message: str) -> None:
        super().__init__(message)
        self.location = location


class SlotConflict(AutoblockError):
    """One of our rule numbers holds an entry autoblock did not write: it is never touched."""

    http_status = 409
    code = "slot_conflict"


def error_class(name: str, default: type[AutoblockError]) -> type[AutoblockError]:
    """The domain error class called ``name`` (as the state machine recorded it), else ``default``."""
    classes = {cls.__name__: cls for cls in _subclasses(AutoblockError)}
    return classes.get(name, default)


def _subclasses(cls: type[AutoblockError]) -> list[type[AutoblockError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]
