"""Go's text/template with sprig's pure functions, as LocalAI renders its model files'
templates: parsed once (syntax errors name the line and column), then run over Go-shaped
data (`GoStruct`, dicts as maps, lists as slices)."""

from __future__ import annotations

from typing import Any

from localhost_ai.config.gotemplate.errors import TemplateError, TemplateRuntimeError, TemplateSyntaxError
from localhost_ai.config.gotemplate.execute import Runner
from localhost_ai.config.gotemplate.functions import FUNCTIONS
from localhost_ai.config.gotemplate.parse import Tree, parse
from localhost_ai.config.templates import RENDER_SECONDS, PromptTemplateError, within
from localhost_ai.config.gotemplate.values import GoStruct, NilDict, NilList, NilStringMap, StringMap

__all__ = ["GoStruct", "GoTemplate", "NilDict", "NilList", "NilStringMap", "StringMap", "TemplateError", "TemplateRuntimeError", "TemplateSyntaxError"]


class GoTemplate:
    """One template, parsed: `render(data)` gives what Go's Execute would write."""

    def __init__(self, source: str, name: str = "prompt") -> None:
        self.source = source
        self.name = name
        self.tree: Tree = parse(source, set(FUNCTIONS))

    def render(self, data: Any) -> str:
        """What Go's Execute writes; a TemplateRuntimeError where Go fails, or when the
        rendering runs past its bounds (output, loop turns, RENDER_SECONDS)."""
        try:
            return within(RENDER_SECONDS, lambda: Runner(self.tree, FUNCTIONS, self.name).run(data))
        except PromptTemplateError as exc:  # out of time
            raise TemplateRuntimeError(str(exc)) from None
        except RecursionError:
            raise TemplateRuntimeError("the template recursed too deeply") from None
