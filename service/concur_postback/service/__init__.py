"""The web tier: the postback endpoint Concur calls, health probes, and its server."""
