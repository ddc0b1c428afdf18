"""Experiment configs: one `get_config(arg)` per file (see common.py for every field)."""
