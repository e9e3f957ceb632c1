"""The team gateway: an OpenAI-compatible `/v1` for members' own scripts and tools, with
personal keys (models.keys), the chat's limits, quotas and ledger (generation.admission,
generation.settle) and the chat's reading of every provider (upstream)."""
