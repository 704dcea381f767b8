"""Encoders: the registry of encoder specs and their checkpoint converters."""
