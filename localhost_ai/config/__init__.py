"""What a model is: the YAML schema, the loader and prompt templates."""

from localhost_ai.config.model_config import ConfigError, ModelConfig, bare_weights_config, load_yaml_config

__all__ = ["ConfigError", "ModelConfig", "bare_weights_config", "load_yaml_config"]
