"""HTTP + WebSocket server of the daemon (protocol v1, ``docs/protocol.md``)."""
