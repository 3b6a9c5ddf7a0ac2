"""Amnesia: logout policy, process hardening, RAM-only SQLite, and the proof tools."""
