"""Client side: submit videos to workers of a room; the CLI is a thin layer over it."""
