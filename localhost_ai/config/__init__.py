"""What a model is: the YAML schema, the loader and prompt templates."""

from localhost_ai.config.capabilities import (
    CHAT, COMPLETION, EDIT, EMBEDDINGS, IMAGE, RERANK, SPEECH, TOKENIZE, TRANSCRIPTION, CapabilityRule,
)
from localhost_ai.config.model_config import ConfigError, ModelConfig, bare_weights_config, load_yaml_config, load_yaml_file
from localhost_ai.config.options import BackendOptions, option

__all__ = [
    "CHAT", "COMPLETION", "EDIT", "EMBEDDINGS", "IMAGE", "RERANK", "SPEECH", "TOKENIZE", "TRANSCRIPTION",
    "BackendOptions", "CapabilityRule", "ConfigError", "ModelConfig", "bare_weights_config", "load_yaml_config", "load_yaml_file", "option",
]
