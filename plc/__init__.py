"""plc: packet loss concealment for real-time voice."""

__version__ = "0.1.0"
