"""Reuse the pipeline tests' generated videos."""

from tests.pipelines.conftest import long_video, not_a_video  # noqa: F401
