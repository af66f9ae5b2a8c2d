"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from localhost_ai.registry import Registry
from localhost_ai.runtime.manager import ModelManager
from localhost_ai.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", Registry)
MANAGER = web.AppKey("manager", ModelManager)
