"""An apply body (`POST /models/apply`, `PRELOAD_MODELS`, the CLI) turned into a checked
InstallRequest: unknown ids, bad names and forbidden URIs are refused before any job."""

from __future__ import annotations

from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from localhost_ai.config.validation import first_found, first_problem
from localhost_ai.errors import InvalidRequest
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.install import InstallRequest, check_backend, check_files, check_name
from localhost_ai.gallery.uris import resolve

APPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "url": {"type": "string", "minLength": 1},
        "config_url": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "files": {"type": "array"},
        "overrides": {"type": "object"},
        "overwrite": {"type": "boolean"},
    },
    # A config from a gallery entry, a definition, a config file, or the body itself (a name,
    # its files, and the config in `overrides`).
    "anyOf": [{"required": ["id"]}, {"required": ["url"]}, {"required": ["config_url"]}, {"required": ["name", "files"], "properties": {"files": {"minItems": 1}}}],
}
_VALIDATOR = Draft202012Validator(APPLY_SCHEMA)


async def build_request(body: Any, galleries: Galleries, session: aiohttp.ClientSession, allow_file: bool) -> InstallRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("An apply request must be a JSON object.", code="invalid_body")
    problem = first_problem(_VALIDATOR, body, first_found)
    if problem is not None:
        message = ("One of 'id', 'url' or 'config_url' is required, or 'name' with 'files'." if problem.error.validator == "anyOf"
                   else f"Invalid value for '{problem.dotted}': {problem.message}")
        raise InvalidRequest(message, param=problem.dotted or "id", code="invalid_value")
    if body.get("name") is not None:
        check_name(body["name"])
    for key in ("url", "config_url"):
        if body.get(key):
            resolve(body[key], allow_file=allow_file, param=key)
    request = InstallRequest(
        url=body.get("url"),
        config_url=body.get("config_url"),
        name=body.get("name"),
        files=check_files(body.get("files"), "files", allow_file),
        overrides=body.get("overrides") or {},
        overwrite=bool(body.get("overwrite")),
    )
    if body.get("id"):
        request.entry = await galleries.find(session, body["id"])
        check_backend(request.entry.backend, body["id"])
        check_files(request.entry.data.get("files"), "files", allow_file)
        if request.entry.data.get("url"):
            resolve(request.entry.data["url"], allow_file=allow_file, param="url")
    return request
