"""The gallery over HTTP: /models/apply, /models/jobs, /models/available,
/models/galleries and /models/delete (LocalAI's routes)."""

from __future__ import annotations

from aiohttp import web

from localhost_ai.backends import backend_options

from localhost_ai.api.keys import GALLERIES, JOBS, MANAGER, SETTINGS
from localhost_ai.api import openapi
from localhost_ai.api.routes import GALLERY
from localhost_ai.api.middlewares import own_url
from localhost_ai.api.validation import read_json
from localhost_ai.errors import InvalidRequest, NotFound
from localhost_ai.gallery.apply import APPLY_SCHEMA, build_request
from localhost_ai.gallery.index import GalleryRef, tag_counts
from localhost_ai.gallery.install import check_name, delete_model, installed_configs

_GALLERY_BODY = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "url": {"type": "string", "minLength": 1}},
}


@GALLERY.post("/models/apply")
@openapi.document("Install a model from a gallery, a URL or a config URL, as a background job", body=APPLY_SCHEMA, json=openapi.obj(uuid=openapi.STRING, status=openapi.STRING))
async def apply(request: web.Request) -> web.Response:
    body = await read_json(request, {"type": "object"})  # build_request checks the fields
    runner = request.app[JOBS]
    install = await build_request(body, request.app[GALLERIES], runner.session(), runner.allow_file_uris)
    job = runner.submit(install)
    status = own_url(request, str(request.app.router["job"].url_for(uuid=job.uuid)))
    return web.json_response({"uuid": job.uuid, "status": status})


def _job(request: web.Request):
    job = request.app[JOBS].jobs.get(request.match_info["uuid"])
    if job is None:
        raise NotFound(f"No job {request.match_info['uuid']}.", param="uuid", code="job_not_found")
    return job


@GALLERY.get("/models/jobs/{uuid}", name="job")
@openapi.document("An install job", json=openapi.JOB)
async def job_status(request: web.Request) -> web.Response:
    return web.json_response(_job(request).as_dict())


@GALLERY.get("/models/jobs")
@openapi.document("Every install job still kept", json={"type": "object", "additionalProperties": openapi.JOB})
async def jobs(request: web.Request) -> web.Response:
    runner = request.app[JOBS]
    runner.forget_finished()
    return web.json_response({uuid: job.as_dict() for uuid, job in runner.jobs.items()})


@GALLERY.post("/models/jobs/{uuid}/cancel")
@GALLERY.delete("/models/jobs/{uuid}")
@openapi.document("Cancel an install job", json=openapi.JOB)
async def cancel_job(request: web.Request) -> web.Response:
    job = _job(request)
    await request.app[JOBS].cancel(job.uuid)
    return web.json_response(job.as_dict())


MAX_PAGE_SIZE = 1000


def _positive(request: web.Request, name: str, default: int | None, most: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < 1 or (most is not None and int(text) > most):
        raise InvalidRequest(f"'{name}' must be a whole number from 1{f' to {most}' if most else ''}.", param=name,
                             code="invalid_value")
    return int(text)


def _boolean(request: web.Request, name: str) -> bool | None:
    text = request.query.get(name)
    if text is None:
        return None
    if text not in ("true", "false"):
        raise InvalidRequest(f"'{name}' must be true or false.", param=name, code="invalid_value")
    return text == "true"


@GALLERY.get("/models/available")
@openapi.document("The galleries' models: `search` (words in the name, description or tags), `tag`, `backend`, "
                  "`gallery` (its name), `installed` (true or false), and `page` of `page_size`; "
                  "X-Total-Count says how many match",
                  query={"search": openapi.STRING, "tag": openapi.STRING, "backend": openapi.STRING,
                         "gallery": openapi.STRING, "installed": {"enum": ["true", "false"]},
                         "page": openapi.INTEGER, "page_size": openapi.INTEGER}, json=openapi.AVAILABLE)
async def available(request: web.Request) -> web.Response:
    runner = request.app[JOBS]
    page = _positive(request, "page", 1)
    page_size = _positive(request, "page_size", None, MAX_PAGE_SIZE)
    only_installed = _boolean(request, "installed")
    entries, problems = await request.app[GALLERIES].entries(runner.session())
    installed = set(installed_configs(request.app[SETTINGS].models_path))
    words = (request.query.get("search") or "").lower().split()
    tag, backend, gallery = request.query.get("tag"), request.query.get("backend"), request.query.get("gallery")
    entries = [e for e in entries if e.matches(words, tag, backend, gallery)
               and (only_installed is None or (e.name in installed) == only_installed)]
    total = len(entries)
    if page_size is not None:
        entries = entries[(page - 1) * page_size:page * page_size]  # type: ignore[operator]
    refs = {ref.name: ref.as_dict() for ref in request.app[GALLERIES].refs}
    known = backend_options()
    models = []
    for entry in entries:
        data = entry.data
        models.append({
            "id": entry.id,
            "name": entry.name,
            "gallery": refs.get(entry.gallery, {"name": entry.gallery}),
            "description": data.get("description") or "",
            "license": data.get("license") or "",
            "urls": data.get("urls") or [],
            "tags": data.get("tags") or [],
            "icon": data.get("icon") or "",
            "files": [{"filename": f.get("filename"), "uri": f.get("uri"), "sha256": f.get("sha256")}
                      for f in data.get("files") or []],
            "installed": entry.name in installed,
            # The backend the entry names (None: its base config tells, at install) and whether this server has it.
            "backend": entry.backend,
            "supported": entry.backend is None or entry.backend in known,
        })
    headers = {"X-Total-Count": str(total)}
    if problems:
        headers["X-Gallery-Problems"] = str(len(problems))
    return web.json_response(models, headers=headers)


@GALLERY.get("/models/available/tags")
@openapi.document("Every tag of the galleries' models, by name, with how many models have it", json=openapi.TAGS)
async def available_tags(request: web.Request) -> web.Response:
    entries, _ = await request.app[GALLERIES].entries(request.app[JOBS].session())
    return web.json_response(tag_counts(entries))


@GALLERY.get("/models/galleries")
@openapi.document("The galleries", json=openapi.GALLERIES)
async def list_galleries(request: web.Request) -> web.Response:
    return web.json_response([ref.as_dict() for ref in request.app[GALLERIES].refs])


@GALLERY.post("/models/galleries")
@openapi.document("Add a gallery", body={**_GALLERY_BODY, "required": ["name", "url"]}, json=openapi.GALLERIES)
async def add_gallery(request: web.Request) -> web.Response:
    body = await read_json(request, {**_GALLERY_BODY, "required": ["name", "url"]})
    request.app[GALLERIES].add(GalleryRef(body["name"], body["url"]))
    return await list_galleries(request)


@GALLERY.delete("/models/galleries")
@openapi.document("Remove a gallery", body=_GALLERY_BODY, json=openapi.GALLERIES)
async def remove_gallery(request: web.Request) -> web.Response:
    body = await read_json(request, _GALLERY_BODY)
    if not request.app[GALLERIES].remove(body["name"]):
        raise NotFound(f"No gallery named '{body['name']}'.", param="name", code="gallery_not_found")
    return await list_galleries(request)


@GALLERY.post("/models/delete/{name}")
@openapi.document("Delete an installed model and the files it installed", json=openapi.obj(model=openapi.STRING, deleted=openapi.BOOLEAN, removed_files={"type": "array", "items": openapi.STRING}))
async def delete(request: web.Request) -> web.Response:
    name = check_name(request.match_info["name"])
    removed = delete_model(request.app[SETTINGS].models_path, name)
    await request.app[MANAGER].unload(name)
    return web.json_response({"model": name, "deleted": True, "removed_files": removed})
