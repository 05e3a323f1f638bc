"""Sans-I/O protocol cores: message models and codecs (JSON for signaling, msgpack for peers)."""
