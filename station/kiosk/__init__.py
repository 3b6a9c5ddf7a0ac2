"""The kiosk pages: the pairing screen (supervisor) and each session page (worker)."""
