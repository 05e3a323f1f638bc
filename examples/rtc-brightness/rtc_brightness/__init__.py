"""Example rtc-annotator plugin: frame brightness per sample interval."""
