"""multipart/form-data uploads (audio, images): text fields and files, read within the
server's upload limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from localhost_ai.api.keys import SETTINGS
from localhost_ai.api.validation import in_time
from localhost_ai.errors import InvalidRequest, PayloadTooLarge


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    filenames: dict[str, str] = field(default_factory=dict)


async def read_form(request: web.Request, file_param: str, what: str, file_fields: tuple[str, ...] = ()) -> Form:
    """The form's parts; a part is a file when it has a file name or is one of `file_fields`
    (`name[]` is read as `name`).  `file_param` and `what` name the upload in errors.  Read
    within --read-timeout."""
    return await in_time(request, _read_form(request, file_param, what, file_fields))


async def _read_form(request: web.Request, file_param: str, what: str, file_fields: tuple[str, ...]) -> Form:
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest(f"Send the {what} as multipart/form-data with a '{file_param}' field.", param=file_param,
                             code="invalid_content_type")
    megabytes = request.app[SETTINGS].upload_limit_mb
    limit = megabytes * 1024 * 1024
    too_large = PayloadTooLarge(f"The upload is larger than the limit of {megabytes} MB.", param=file_param,
                                code="request_too_large")
    if (request.content_length or 0) > limit:
        raise too_large
    form = Form()
    total = 0
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:  # no boundary, or not a multipart type aiohttp reads
        raise InvalidRequest(f"The multipart/form-data body cannot be read: {exc or 'no boundary'}.",
                             param=file_param, code="invalid_content_type") from None
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # a nested multipart: no field of ours is one
                raise InvalidRequest("The multipart/form-data body nests another multipart body, which no field takes.",
                                     param=file_param, code="invalid_multipart")
            data = bytearray()
            while chunk := await part.read_chunk(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise too_large
                data += chunk
            name = (part.name or "").removesuffix("[]")
            if not name:
                continue
            if part.filename is not None or name in file_fields:
                form.files[name] = bytes(data)
                form.filenames[name] = part.filename or "upload"
            else:
                form.fields[name] = bytes(data).decode("utf-8", errors="replace").strip()
    except (HttpProcessingError, ValueError):  # headers that are not HTTP headers; a missing or cut boundary
        raise InvalidRequest("The multipart/form-data body cannot be read: its boundaries or a part's headers are "
                             "malformed.",
                             param=file_param, code="invalid_multipart") from None
    return form
