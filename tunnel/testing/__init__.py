"""Test kit: memory links, a seeded fault-injecting link, a fake clock."""
