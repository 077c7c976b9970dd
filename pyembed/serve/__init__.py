"""The embedding server: an OpenAI-compatible HTTP API over batched encoders."""
