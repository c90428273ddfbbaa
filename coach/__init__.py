"""coach: real-time call coaching for contact centres."""

__version__ = "0.1.0"
