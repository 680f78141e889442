"""Test scaffolding: fault injection, item counting, hand-written table items, the assertions
several tiers share. Nothing outside tests/ imports it."""
