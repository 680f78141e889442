import pytest
from pydantic import ValidationError

from autoblock.models import Settings

ENV = {
    "TABLE_NAME": "blocks",
    "NACL_IDS": "acl-1, acl-2",
    "RULE_NUMBER_START": "10",
    "RULE_LIMIT": "5",
    "DEFAULT_DURATION_SECONDS": "3600",
    "MAX_DURATION_SECONDS": "86400",
    "ALLOWLIST_CIDRS": "",
    "MIN_PREFIX_LENGTH_V4": "24",
    "MIN_PREFIX_LENGTH_V6": "64",
    "WHEN_FULL": "evict-soonest-expiring",
}


def test_settings_come_from_the_environment_the_template_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.nacl_ids == ("acl-1", "acl-2")
    assert settings.allowlist_cidrs == ()
    assert settings.rule_range.end == 14
    assert settings.when_full == "evict-soonest-expiring"
    # Issue 6's parameters default as the template does
    assert (settings.dry_run, settings.history_retention_days) == (False, 90)
    assert (settings.escalation_window_days, settings.escalation_factor) == (30, 2)


def test_dry_run_and_escalation_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "DRY_RUN": "true",
        "HISTORY_RETENTION_DAYS": "7",
        "ESCALATION_WINDOW_DAYS": "0",
        "ESCALATION_FACTOR": "1.5",
    }
    for key, value in {**ENV, **extra}.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert (settings.dry_run, settings.history_ttl_seconds) == (True, 7 * 86400)
    assert (settings.escalation_window_days, settings.escalation_factor) == (0, 1.5)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RULE_LIMIT", "41"),
        ("WHEN_FULL", "drop"),
        ("NACL_IDS", " , "),
        ("HISTORY_RETENTION_DAYS", "0"),
        ("ESCALATION_FACTOR", "0.5"),
        ("DRY_RUN", "maybe"),
    ],
)
def test_a_misconfigured_stack_fails_loudly(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    for k, v in {**ENV, key: value}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings.from_env()
