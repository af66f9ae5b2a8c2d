"""Prometheus metrics of the server, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter("localhost_ai_requests", "HTTP requests by endpoint and status",
                   ["endpoint", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("localhost_ai_request_duration_seconds", "Time to answer an HTTP request (to the end of a stream)",
                    ["endpoint"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
PROMPT_TOKENS = Counter("localhost_ai_prompt_tokens", "Prompt tokens processed", ["model"], registry=REGISTRY)
CACHED_PROMPT_TOKENS = Counter("localhost_ai_prompt_tokens_cached", "Prompt tokens found in a cached prefix",
                               ["model"], registry=REGISTRY)
GENERATED_TOKENS = Counter("localhost_ai_generated_tokens", "Tokens generated", ["model"], registry=REGISTRY)
QUEUE_LENGTH = Gauge("localhost_ai_queue_length", "Calls waiting for a model (loading or behind others)",
                     ["model"], registry=REGISTRY)
LOADED_MODELS = Gauge("localhost_ai_loaded_models", "Models loaded in a worker process", registry=REGISTRY)
MODEL_LOADS = Counter("localhost_ai_model_loads", "Model loads by outcome", ["model", "outcome"], registry=REGISTRY)
WORKER_RESTARTS = Counter("localhost_ai_worker_restarts", "Workers started again after their process died",
                          ["model"], registry=REGISTRY)
WORKER_DEATHS = Counter("localhost_ai_worker_deaths", "Worker processes that died or were killed",
                        ["model"], registry=REGISTRY)
BATCH_CALLS = Histogram("localhost_ai_batch_calls", "Calls run together in one batch by a worker",
                        ["model"], registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
# The engines' own figures (llama-cpp models), read from each loaded worker when /metrics is asked.
REPLICAS = Gauge("localhost_ai_replicas", "A model's ready replicas on each node of the Ray cluster (serve --ray)",
                 ["model", "node"], registry=REGISTRY)
ENGINE = Gauge("localhost_ai_engine", "A loaded model's decoding engine: steps, prompt steps, draft tokens tried and "
               "kept (counted since its worker started)", ["model", "figure"], registry=REGISTRY)
ENGINE_FIGURES = ("steps", "prompt_steps", "tokens_generated", "drafted", "draft_accepted")
