"""rtc-annotator: a peer-to-peer WebRTC worker network for video annotation."""

__version__ = "0.1.0"
