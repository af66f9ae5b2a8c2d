"""How loaded models run: the manager loads, queues and runs every call into a model."""
