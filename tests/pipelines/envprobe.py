"""A test pipeline that reports its job process's thread settings and loaded libraries."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from rtc_annotator.pipelines.base import Pipeline, PipelineOptions, PipelineOutput, RunContext


class EnvProbe(Pipeline):
    name: ClassVar[str] = "envprobe"
    version: ClassVar[str] = "1"
    artifact_types: ClassVar[tuple[str, ...]] = ()

    def run(self, video: Path, options: PipelineOptions,
            context: RunContext) -> Iterator[PipelineOutput]:
        import cv2

        report = {"omp": os.environ.get("OMP_NUM_THREADS"), "cv2_threads": cv2.getNumThreads(),
                  "modules": sorted(m for m in ("torch", "ultralytics", "easyocr")
                                    if m in sys.modules)}
        if "torch" in sys.modules:
            report["torch_threads"] = sys.modules["torch"].get_num_threads()
        context.stats[self.name] = report  # reaches JobResult.stats; no artifact to store
        yield from ()
