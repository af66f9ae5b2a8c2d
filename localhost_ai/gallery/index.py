"""Galleries: YAML indexes of installable models, in LocalAI's gallery format."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from localhost_ai.config.validation import first_found, first_problem
from localhost_ai.config.yamlfile import MAX_INDEX_NODES
from localhost_ai.errors import NotFound
from localhost_ai.gallery.fetch import FetchError, fetch_bytes, parse_yaml
from localhost_ai.gallery.uris import resolve

BUILTIN = "builtin"
_BACKEND_LINE = re.compile(r"^backend:[ \t]*(\S+)[ \t]*$", re.M)
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-+@:]{0,127}$"

_FILE = {
    "type": "object",
    "required": ["filename", "uri"],
    "properties": {
        "filename": {"type": "string", "minLength": 1},
        "uri": {"type": "string", "minLength": 1},
        "sha256": {"anyOf": [{"type": "string", "pattern": "^([0-9a-fA-F]{64})?$"}, {"type": "null"}]},
    },
}
FILES = {"type": "array", "items": _FILE}
ENTRY_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": SAFE_NAME},
        "description": {"type": ["string", "null"]},
        "license": {"type": ["string", "null"]},
        "urls": {"type": ["array", "null"], "items": {"type": "string"}},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "icon": {"type": ["string", "null"]},
        "url": {"type": ["string", "null"]},
        "config_file": {"type": ["string", "object", "null"]},
        "files": {"anyOf": [FILES, {"type": "null"}]},
        "overrides": {"type": ["object", "null"]},
    },
}
_ENTRY_VALIDATOR = Draft202012Validator(ENTRY_SCHEMA)
CACHE_SECONDS = 300


@dataclass(frozen=True)
class GalleryRef:
    name: str
    url: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url}


@dataclass
class Entry:
    gallery: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def id(self) -> str:
        return f"{self.gallery}@{self.name}"

    @property
    def backend(self) -> str | None:
        """The backend the entry names (its overrides, or its inline config_file); None when
        only its base config (`url:`) would tell, which is fetched at install."""
        overrides = self.data.get("overrides")
        if isinstance(overrides, dict) and isinstance(overrides.get("backend"), str):
            return overrides["backend"]
        config = self.data.get("config_file")
        if isinstance(config, dict) and isinstance(config.get("backend"), str):
            return config["backend"]
        if isinstance(config, str):
            match = _BACKEND_LINE.search(config)
            if match:
                return match.group(1).strip("'\"")
        return None

    def matches(self, words: list[str], tag: str | None, backend: str | None, gallery: str | None = None) -> bool:
        """`?search=` (every word in the name, description or tags), `?tag=`, `?backend=`, `?gallery=`."""
        if gallery is not None and self.gallery != gallery:
            return False
        tags = [str(t).lower() for t in self.data.get("tags") or []]
        if tag is not None and tag.lower() not in tags:
            return False
        if backend is not None and (self.backend or "").lower() != backend.lower():
            return False
        text = " ".join([self.name, str(self.data.get("description") or ""), *tags]).lower()
        return all(word in text for word in words)


def tag_counts(entries: list[Entry]) -> list[dict[str, Any]]:
    """Every tag and how many entries have it, by name; tags that differ only in case are one
    (as `?tag=` matches them), under the spelling seen first."""
    spelling: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for entry in entries:
        tags = [str(t) for t in entry.data.get("tags") or []]
        for tag in tags:
            spelling.setdefault(tag.lower(), tag)
        counts.update({tag.lower() for tag in tags})
    return [{"tag": spelling[key], "count": counts[key]} for key in sorted(counts)]


def _read_index(data: bytes, gallery: str) -> tuple[list[Entry], list[str]]:
    items = parse_yaml(data, f"gallery {gallery}", MAX_INDEX_NODES) or []
    if not isinstance(items, list):
        raise FetchError(f"gallery {gallery} must be a YAML list of entries")
    entries, problems = [], []
    for position, item in enumerate(items):
        problem = first_problem(_ENTRY_VALIDATOR, item, first_found)
        if problem is not None:
            problems.append(f"entry {position}: {problem.message}")
            continue
        entries.append(Entry(gallery=gallery, data=item))
    return entries, problems


@dataclass
class Galleries:
    """The configured galleries and a short-lived cache of their indexes."""

    refs: list[GalleryRef]
    allow_file_uris: bool = False
    _cache: dict[str, tuple[float, list[Entry], list[str]]] = field(default_factory=dict)

    @staticmethod
    def builtin() -> GalleryRef:
        return GalleryRef(name="localhost-ai", url=BUILTIN)

    @classmethod
    def parse_setting(cls, text: str | None) -> list[GalleryRef]:
        """`--galleries`: a JSON list of {"name", "url"}; empty means this project's own."""
        if not text:
            return [cls.builtin()]
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"GALLERIES must be a JSON list of {{name, url}}: {exc}") from None
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("url"), str) for i in items
        ):
            raise ValueError("GALLERIES must be a JSON list of {\"name\": ..., \"url\": ...}")
        return [GalleryRef(i["name"], i["url"]) for i in items]

    def add(self, ref: GalleryRef) -> None:
        if ref.url != BUILTIN:
            resolve(ref.url, allow_file=self.allow_file_uris, param="url")
        self.refs = [r for r in self.refs if r.name != ref.name] + [ref]
        self._cache.pop(ref.name, None)

    def remove(self, name: str) -> bool:
        before = len(self.refs)
        self.refs = [r for r in self.refs if r.name != name]
        self._cache.pop(name, None)
        return len(self.refs) != before

    async def _load(self, session: aiohttp.ClientSession, ref: GalleryRef) -> tuple[list[Entry], list[str]]:
        cached = self._cache.get(ref.name)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        if ref.url == BUILTIN:
            data = files("localhost_ai.gallery").joinpath("index.yaml").read_bytes()
        else:
            data = await fetch_bytes(session, resolve(ref.url, allow_file=True, param="url"))
        # Reading a large index takes a while: on a thread, so the event loop stays free.
        entries, problems = await asyncio.to_thread(_read_index, data, ref.name)
        self._cache[ref.name] = (time.monotonic(), entries, problems)
        return entries, problems

    async def entries(self, session: aiohttp.ClientSession) -> tuple[list[Entry], list[str]]:
        """Entries of every gallery; a gallery that cannot be read is reported, not fatal."""
        everything, problems = [], []
        for ref in self.refs:
            try:
                entries, bad = await self._load(session, ref)
            except Exception as exc:
                problems.append(f"gallery {ref.name}: {getattr(exc, 'message', exc)}")
                continue
            everything += entries
            problems += [f"gallery {ref.name}: {p}" for p in bad]
        return everything, problems

    async def find(self, session: aiohttp.ClientSession, model_id: str) -> Entry:
        """`gallery@name` or a bare `name` (the first gallery that has it)."""
        gallery, _, name = model_id.rpartition("@")
        entries, _ = await self.entries(session)
        for entry in entries:
            if entry.name == name and (not gallery or entry.gallery == gallery):
                return entry
        known = ", ".join(sorted(e.id for e in entries)[:50]) or "none"
        raise NotFound(f"No gallery has a model '{model_id}'. Available: {known}.", param="id", code="model_not_found")

