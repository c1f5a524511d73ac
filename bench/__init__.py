"""Benchmarks: they print figures; nothing here is collected by pytest."""
