"""Attention-locality analysis: metrics, the jitted model-level pass, the CLI and the report."""
