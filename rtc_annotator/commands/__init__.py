"""CLI command groups, one module each; :mod:`rtc_annotator.cli` mounts them."""
