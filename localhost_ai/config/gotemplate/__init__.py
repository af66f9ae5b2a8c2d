"""Go's text/template with sprig's pure functions, as LocalAI renders its model files'
templates: parsed once (syntax errors name the line and column), then run over Go-shaped
data (`GoStruct`, dicts as maps, lists as slices)."""

from __future__ import annotations

from typing import Any

from localhost_ai.config.gotemplate.errors import TemplateError, TemplateRuntimeError, TemplateSyntaxError
from localhost_ai.config.gotemplate.execute import Runner
from localhost_ai.config.gotemplate.functions import FUNCTIONS
from localhost_ai.config.gotemplate.parse import Tree, parse
from localhost_ai.config.gotemplate.values import GoStruct, NilDict, NilList, NilStringMap, StringMap

__all__ = ["GoStruct", "GoTemplate", "NilDict", "NilList", "NilStringMap", "StringMap", "TemplateError", "TemplateRuntimeError", "TemplateSyntaxError"]


class GoTemplate:
    """One template, parsed: `render(data)` gives what Go's Execute would write."""

    def __init__(self, source: str, name: str = "prompt") -> None:
        self.source = source
        self.name = name
        self.tree: Tree = parse(source, set(FUNCTIONS))

    def render(self, data: Any) -> str:
        return Runner(self.tree, FUNCTIONS, self.name).run(data)
