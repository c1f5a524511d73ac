"""Event sources: the wire format, simulators and Kafka producers."""
