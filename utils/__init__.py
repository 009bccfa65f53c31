"""Shared harness code: backend selection, arguments and presets, options, logging, metrics, distribution."""
