"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from localhost_ai.api.response_store import ResponseStore
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.jobs import JobRunner
from localhost_ai.gallery.preload import PreloadState
from localhost_ai.registry import Registry
from localhost_ai.runtime.manager import ModelManager
from localhost_ai.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", Registry)
MANAGER = web.AppKey("manager", ModelManager)
GALLERIES = web.AppKey("galleries", Galleries)
JOBS = web.AppKey("jobs", JobRunner)
PRELOAD = web.AppKey("preload", PreloadState)
RESPONSES = web.AppKey("responses", ResponseStore)
