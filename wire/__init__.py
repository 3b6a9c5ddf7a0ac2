"""The application protocol both ends import: typed messages and their one codec.

``wire.app`` holds what travels inside the tunnel's Data frames and Notices, between a
phone and a station. Neither ``station`` nor ``medic_phone`` imports the other: both
import this package, and this package imports neither.
"""

from wire.errors import WireError

__all__ = ["WireError"]
