"""Serving: an OpenAI-compatible HTTP API and a Turkish chat page over the continuous batcher."""
