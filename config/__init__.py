"""Cross-cutting configuration shared by every process: settings base, logging."""
