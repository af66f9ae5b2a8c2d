"""Each API surface declares its routes once, in its own table, and is served under
each of its prefixes: OpenAI's under `/v1` and bare, as LocalAI serves them."""

from __future__ import annotations

from aiohttp import web


class Surface(web.RouteTableDef):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes or ("",)

    def mount(self, app: web.Application) -> None:
        for prefix in self.prefixes:
            for route in self:
                assert isinstance(route, web.RouteDef)
                kwargs = dict(route.kwargs)
                if len(self.prefixes) > 1:
                    kwargs.pop("name", None)  # a route name is one URL, not one per prefix
                if route.method == "GET":  # and HEAD, as add_get serves it
                    app.router.add_get(prefix + route.path, route.handler, **kwargs)
                else:
                    app.router.add_route(route.method, prefix + route.path, route.handler, **kwargs)


OPENAI = Surface("/v1", "")  # OpenAI's API, and Nexa's routes that share its prefix
GALLERY = Surface()  # LocalAI's /models/* routes
SERVER = Surface()  # health, state, metrics and files the server itself serves
