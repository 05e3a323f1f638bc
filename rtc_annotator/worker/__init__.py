"""Worker side: job slots, local queue, child-process job runner, capabilities.

See docs/worker.md.
"""
