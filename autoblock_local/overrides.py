"""``--parameter-overrides`` as ``sam deploy`` spells it, checked against template.yaml's own constraints."""

from __future__ import annotations

import re
import shlex
from typing import Any

# What the local stack makes itself: its demo NACLs and its own token.
NOT_OVERRIDABLE = {
    "NetworkAclIds": "the local stack blocks in its own demo NACLs (use --nacls for how many)",
    "ExistingTokenSecretArn": "the local stack makes its own demo token",
    "ProtectedResourceArns": "the local stack has no load balancer or API for a web ACL to protect",
}


class OverrideError(ValueError):
    """A parameter override the template does not accept."""


def parse(tokens: list[str]) -> dict[str, str]:
    """``Key=Value`` pairs (one per token, or several in one quoted token) or
    ``ParameterKey=Key,ParameterValue=Value``, the two forms ``sam`` accepts."""
    pairs: dict[str, str] = {}
    for token in tokens:
        for part in shlex.split(token):
            long_form = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", part)
            if long_form:
                key, value = long_form.groups()
            elif "=" in part:
                key, _, value = part.partition("=")
            else:
                raise OverrideError(f"{part!r} is not Key=Value")
            pairs[key] = value
    return pairs


def check(parameters: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """The overrides as the template would take them (numbers as int); a readable error otherwise."""
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in parameters:
            known = ", ".join(sorted(parameters))
            raise OverrideError(f"template.yaml has no parameter {key!r}; it has: {known}")
        if key in NOT_OVERRIDABLE:
            raise OverrideError(f"{key} cannot be overridden here: {NOT_OVERRIDABLE[key]}")
        spec = parameters[key]
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            raise OverrideError(f"{key}={value!r}: must be one of {', '.join(str(a) for a in allowed)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise OverrideError(f"{key}={value!r}: {spec.get('ConstraintDescription') or 'does not match ' + pattern}")
        if spec["Type"] == "Number":
            try:
                number = int(value)
            except ValueError:
                raise OverrideError(f"{key}={value!r}: must be a whole number") from None
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if (low is not None and number < int(low)) or (high is not None and number > int(high)):
                raise OverrideError(f"{key}={number}: must be between {low} and {high}")
            checked[key] = number
        else:
            checked[key] = value
    return checked
