"""rtc-annotator: a peer-to-peer WebRTC worker network for video annotation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rtc-annotator")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
