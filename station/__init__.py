"""The kiosk station daemon."""
