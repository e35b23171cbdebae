"""The daemon: wires sources, ingest, detect, store, sync and web together."""
