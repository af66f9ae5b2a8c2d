"""localhost_ai: local models from a folder of YAML files, served under the OpenAI API."""

__version__ = "0.1.0"
