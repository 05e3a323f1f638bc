"""The HTTP API (aiohttp) over the artifact store."""

from rtc_annotator.api.app import make_app, run_server
from rtc_annotator.api.openapi import openapi_document

__all__ = ["make_app", "openapi_document", "run_server"]
