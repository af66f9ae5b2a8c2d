"""What a Go template can fail with: at parse time, with its line and column, or while it runs."""

from __future__ import annotations


class TemplateError(Exception):
    """A Go template that cannot be rendered."""


class TemplateSyntaxError(TemplateError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


class TemplateRuntimeError(TemplateError):
    """The template parsed but failed on its data (Go's execution errors)."""
