"""Local infrastructure: a real Apache Kafka broker and Redis server on loopback."""
