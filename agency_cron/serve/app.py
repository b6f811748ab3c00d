"""`agency-cron serve`: the admin API and the live dashboard, a thin HTTP shell.

FastAPI (over Starlette, served by uvicorn) because the request and response models we
declare here are pydantic models, like the manifest's, and FastAPI turns them into the
OpenAPI description at /openapi.json that clients and schemathesis read; Starlette alone
would mean writing that description by hand. Every route calls one function of
agency_cron.admin, reports or dashboard: changes go through the same plan/apply code as
`install`, runs through the runner. Routes are plain `def`s: the library blocks (SQLite,
the crontab binary), so Starlette runs them in its thread pool.

Errors are RFC 9457 problem details (application/problem+json); nothing ever answers
with a stack trace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import types
import typing
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, WithJsonSchema, create_model
from starlette.exceptions import HTTPException

from agency_cron import __version__, admin, dashboard, reports, results
from agency_cron.errors import (
    AgencyCronError,
    BackendError,
    CheckFailed,
    ConfigError,
    UsageError,
)
from agency_cron.manifest import FIELD_HELP, document_schema
from agency_cron.readers import HistoryUnavailable
from agency_cron.serve import is_loopback
from agency_cron.serve.auth import ADMIN, Tokens, matches_any, role_of
from agency_cron.serve.limits import too_large_detail

log = logging.getLogger("agency_cron.serve")
PROBLEM = "application/problem+json"
TOKEN_PARAMETERS = {"token", "access_token", "api_key", "apikey", "key", "auth", "bearer"}
STATES = Literal["running", "completed", "disabled", "failing", "ok", "never-run"]
# statuses.ALL (tests/unit/test_statuses.py holds them equal); running and lost included: a
# run is in history from its start.
RUN_STATUSES = Literal[
    "success", "failed", "timeout", "skipped", "killed", "retry-scheduled", "running", "lost"
]
NAME = Annotated[str, Path(description="Task name", max_length=200)]


# --- models: what the OpenAPI description promises ---------------------------------------


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[str] = Field(default_factory=list)


# A task as written is described by the manifest's own schema (manifest.document_schema),
# but read as a plain mapping: admin.py validates it with the whole manifest, so a bad body
# gets the messages of `agency-cron validate`, not FastAPI's.
# One component (TaskDocument), referred to by POST and PUT (the zone list alone is 10 kB).
TASK_DOCUMENT_REF = {
    "$ref": "#/components/schemas/TaskDocument",
    "description": "A task as in the manifest (see README, 'Manifest reference')",
}
# What GET shows as `definition`: a task as it was written (an API task's body as sent,
# `${VAR}` kept), secrets masked. Its fields are the document's, in whatever form was sent.
TASK_DEFINITION = {
    "type": "object",
    "description": "The task as written (the request body's fields), secrets masked",
    "properties": {key: {"description": text} for key, text in FIELD_HELP.items()},
}


def model_of(cls, name: str | None = None, **narrowed: Any) -> type[BaseModel]:
    """The response model of a results.py dataclass: its fields, in order, with their types
    and defaults (the shape is written once, there). `narrowed` gives some fields a stricter
    type for the OpenAPI description (a status as its Literal) or adds fields the API alone
    has (a run's URL)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        default = ... if item.default is dataclasses.MISSING else item.default
        fields[item.name] = (narrowed.pop(item.name, hints[item.name]), default)
    fields.update({key: (annotation, ...) for key, annotation in narrowed.items()})
    return create_model(name or cls.__name__, **fields)


def list_of(model: type[BaseModel]) -> Any:
    """`list[model]` for a model made by model_of (a value, which a type checker cannot
    read as a type)."""
    return types.GenericAlias(list, (model,))


def page_of(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A page of `model` items: items, total, limit, offset."""
    return create_model(
        name, items=(list_of(model), ...), total=(int, ...), limit=(int, ...), offset=(int, ...)
    )


TaskView = model_of(
    results.TaskView,
    state=STATES,
    source=Literal["manifest", "api"],
    definition=Annotated[dict[str, Any], WithJsonSchema(TASK_DEFINITION)],
)
TaskPage = page_of(TaskView, "TaskPage")
Execution = model_of(results.RunRow, "Execution", status=RUN_STATUSES)
ExecutionPage = page_of(Execution, "ExecutionPage")
RunStarted = model_of(results.Started, "RunStarted", run_url=str)


class RetriesReset(BaseModel):
    task: str
    run_id: str
    reset: bool


RunView = model_of(results.RunDetail, "RunView", status=RUN_STATUSES, attempts=list_of(Execution))
Overdue = model_of(results.Overdue)
Health = create_model(
    "Health", healthy=(bool, ...), overdue=(list_of(Overdue), ...), host=(str, ...)
)


PROBLEMS = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": text}
    for code, text in {
        400: "Bad request (a task name that cannot be one)",
        401: "No token, a wrong token, or a token in the URL",
        403: "A read-only token on a write, or a read-only task",
        404: "No such task or run",
        409: "Conflicts with what is there",
        413: "The body is larger than API_MAX_BODY",
        422: "Refused by the manifest validation (the same messages as `agency-cron validate`)",
        502: "The crontab binary or another scheduler backend failed",
        503: "The shared history (HISTORY_URL) does not answer",
    }.items()
}


# --- the application ---------------------------------------------------------------------


def create_app(
    context: admin.Context, tokens: Tokens, max_body: int | None = None, refusals=None
) -> FastAPI:
    """The ASGI application for `context` (config and manifest options) and `tokens`;
    bodies longer than `max_body` are refused (413) as they are read, and refused
    requests go to `refusals` (a serve.refusals.RefusalLog) when one is given."""
    app = FastAPI(
        title="agency-cron admin API",
        version=__version__,
        description="Tasks, runs, history and health of agency-cron. Every route but / and"
        " /openapi.json needs `Authorization: Bearer TOKEN` (ADMIN_TOKEN, or"
        " ADMIN_READ_TOKEN for reading).",
        docs_url=None,  # the Swagger and ReDoc pages load scripts from a CDN
        redoc_url=None,
        responses={401: PROBLEMS[401], 413: PROBLEMS[413]},
        max_body_size=max_body,
    )
    app.state.context, app.state.tokens = context, tokens
    app.state.max_body, app.state.refusals = max_body, refusals
    app.state.metrics_public = False  # serve.build() sets it from METRICS_PUBLIC
    app.router.lifespan_context = _lifespan
    _add_error_handlers(app)
    _add_authorization(app)
    _add_security_headers(app)
    app.include_router(_routes())
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description, with the task document the request bodies refer to."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {}).setdefault("schemas", {})
        schema["components"]["schemas"]["TaskDocument"] = document_schema()
    return app.openapi_schema or {}


# Routes are CPU-bound Python (SQLite reads, cron arithmetic, JSON): more threads than a
# few per core only make them fight for the GIL (measured with bench/serve.py).
THREADS = 8


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
    yield


bearer = HTTPBearer(auto_error=False, description="ADMIN_TOKEN, or ADMIN_READ_TOKEN to read")


class Refusal(HTTPException):
    """A refused request: `detail` is what the client learns, `reason` what the audit
    log says."""

    def __init__(self, status: int, detail: str, reason: str):
        super().__init__(status, detail)
        self.reason = reason


def _actor(request: Request, write: bool) -> dict:
    """Who is asking, from the Authorization header; Refusal (401/403) if refused."""
    tokens: Tokens = request.app.state.tokens
    for key, value in request.query_params.multi_items():
        if key.lower() in TOKEN_PARAMETERS or (value and matches_any(tokens, value)):
            # URLs end up in logs and browser history: a token there is refused even when
            # it is right (and should be rotated).
            raise Refusal(
                401, "tokens go in the Authorization header, never in the URL", "token in the URL"
            )
    presented = _bearer(request)
    role = role_of(tokens, presented)
    if role is None:
        raise Refusal(401, "a valid bearer token is required", _why_no_role(request, presented))
    if write and role != ADMIN:
        raise Refusal(403, "this token may only read", "read-only token on a write")
    return _who(request, role)


def _bearer(request: Request) -> str | None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else None


def _why_no_role(request: Request, presented: str | None) -> str:
    if "authorization" not in request.headers:
        return "no token"
    return "wrong token" if presented else "not a Bearer token"


def _who(request: Request, role: str | None) -> dict:
    """The audit log's actor fields: the token's role (or anonymous), client, user agent."""
    tokens: Tokens = request.app.state.tokens
    client = request.client
    if role is not None and tokens.insecure and not tokens.configured:
        role = "insecure-localhost"
    return {
        "actor": role or "anonymous",
        "client": f"{client.host}:{client.port}" if client else None,
        "user_agent": request.headers.get("user-agent"),
    }


# The check itself runs in a middleware, before FastAPI reads and parses a request body
# (which it does before resolving dependencies): an anonymous caller learns nothing about
# its body and cannot make the server parse one. These dependencies hand the result to the
# routes and declare the bearer scheme in the OpenAPI description.
def reader(request: Request, credentials=Depends(bearer)) -> dict:  # noqa: B008
    return request.state.actor


def writer(request: Request, credentials=Depends(bearer)) -> dict:  # noqa: B008
    return request.state.actor


READS = ("GET", "HEAD", "OPTIONS")
PUBLIC_PATHS = ("/", "/openapi.json")


def _add_authorization(app: FastAPI) -> None:
    @app.middleware("http")
    async def authorize(request: Request, call_next):
        try:
            _same_site_only(request)
            if request.url.path not in PUBLIC_PATHS and not _public(request):
                request.state.actor = _actor(request, write=request.method not in READS)
        except HTTPException as exc:
            _audit_refusal(request, exc)
            return _http_problem(exc)
        return await call_next(request)


def _public(request: Request) -> bool:
    """/metrics without a token: METRICS_PUBLIC=true, which serve allows only on a loopback
    address, and a loopback Host (a page elsewhere cannot read it through DNS rebinding)."""
    if request.url.path != "/metrics" or not request.app.state.metrics_public:
        return False
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    return request.method in READS and is_loopback(host)


TASK_PATH = re.compile(r"^/api/tasks/([^/]{1,200})")


def _audit_refusal(request: Request, exc: HTTPException) -> None:
    """A refused request in the audit log (rate-limited there): who tried what, and why."""
    refusals = request.app.state.refusals
    if refusals is None:
        return
    task = TASK_PATH.match(request.url.path)
    refusals.refused(
        _who(request, role_of(request.app.state.tokens, _bearer(request))),
        request.client.host if request.client else "unknown",
        f"{request.method} {request.url.path}",
        task.group(1) if task else None,
        {"status": exc.status_code, "reason": getattr(exc, "reason", exc.detail)},
    )


def _same_site_only(request: Request) -> None:
    """Refuse what another web site makes a browser send here.

    A page anywhere can make its visitor's browser post a form to 127.0.0.1 (no token is
    needed under --insecure-localhost) and can point a name of its own at 127.0.0.1 (DNS
    rebinding): cross-site requests are refused, and without a token the Host must be a
    loopback name.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site in ("cross-site", "same-site"):
        raise Refusal(403, "cross-site requests are refused", f"Sec-Fetch-Site: {fetch_site}")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refusal(403, "cross-site requests are refused", f"Origin: {origin[:200]}")
    tokens: Tokens = request.app.state.tokens
    if tokens.insecure and not tokens.configured:
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if not is_loopback(host):
            detail = f"Host {host!r} is not a loopback name"
            raise Refusal(403, detail, f"{detail[:200]} (no token configured)")


Reader = Annotated[dict, Depends(reader)]
Writer = Annotated[dict, Depends(writer)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Items to skip")]
TaskBody = Annotated[dict[str, Any], WithJsonSchema(TASK_DOCUMENT_REF), Body()]
HostQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Whose runs: a host's name (its HOST_NAME), or all (the fleet: the default)",
    ),
]


@contextlib.contextmanager
def _viewing(settings, manifest, host: str | None):
    """The histories of `?host=` (default: the fleet), closed afterwards; when the shared
    history is away and this host's local one stands in, the server's log says so."""
    from agency_cron.readers import ALL, viewing

    with viewing(settings, manifest, host, ALL) as view:
        if view.note:
            log.warning("%s", view.note)
        yield view


def _routes():
    from fastapi import APIRouter

    router = APIRouter(responses={k: PROBLEMS[k] for k in (400, 404, 422)})

    @router.get("/api/tasks", response_model=TaskPage, tags=["tasks"])
    def list_tasks(
        request: Request,
        actor: Reader,
        tag: Annotated[str | None, Query(max_length=200)] = None,
        state: STATES | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ):
        settings, manifest, _ = request.app.state.context.load()
        items = admin.list_tasks(settings, manifest, tag, state)
        return {
            "items": results.plain(items[offset : offset + limit]),
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    @router.post(
        "/api/tasks",
        status_code=201,
        response_model=TaskView,
        tags=["tasks"],
        responses={k: PROBLEMS[k] for k in (403, 409, 502)},
    )
    def create_task(request: Request, actor: Writer, body: TaskBody, response: Response):
        created = admin.create_task(request.app.state.context, body, actor)
        response.headers["Location"] = f"/api/tasks/{created.name}"
        return results.plain(created)

    @router.get("/api/tasks/{name}", response_model=TaskView, tags=["tasks"])
    def get_task(request: Request, actor: Reader, name: NAME):
        settings, manifest, _ = request.app.state.context.load()
        return results.plain(admin.get_task(settings, manifest, admin.check_name(name)))

    @router.put(
        "/api/tasks/{name}",
        response_model=TaskView,
        tags=["tasks"],
        responses={k: PROBLEMS[k] for k in (403, 502)},
    )
    def update_task(request: Request, actor: Writer, name: NAME, body: TaskBody):
        return results.plain(admin.update_task(request.app.state.context, name, body, actor))

    @router.delete(
        "/api/tasks/{name}",
        status_code=204,
        tags=["tasks"],
        responses={k: PROBLEMS[k] for k in (403, 409, 502)},
    )
    def delete_task(request: Request, actor: Writer, name: NAME):
        admin.delete_task(request.app.state.context, name, actor)
        return Response(status_code=204)

    @router.post(
        "/api/tasks/{name}/actions/run",
        status_code=202,
        response_model=RunStarted,
        tags=["actions"],
        responses={403: PROBLEMS[403]},
    )
    def run_task(request: Request, actor: Writer, name: NAME):
        started = admin.run_now(request.app.state.context, name, actor)
        return {**results.plain(started), "run_url": f"/api/runs/{started.run_id}"}

    for action, paused in (("pause", True), ("resume", False)):
        _add_toggle(router, action, paused)

    @router.post(
        "/api/tasks/{name}/actions/reset-retries",
        response_model=RetriesReset,
        tags=["actions"],
        responses={k: PROBLEMS[k] for k in (403, 409)},
    )
    def reset_retries(request: Request, actor: Writer, name: NAME):
        return admin.reset_retries(request.app.state.context, name, actor)

    @router.get(
        "/api/tasks/{name}/executions",
        response_model=ExecutionPage,
        tags=["runs"],
        responses={503: PROBLEMS[503]},
    )
    def executions(
        request: Request,
        actor: Reader,
        name: NAME,
        limit: Limit = 50,
        offset: Offset = 0,
        host: HostQuery = None,
    ):
        settings, manifest, _ = request.app.state.context.load()
        admin.get_task(settings, manifest, admin.check_name(name))
        with _viewing(settings, manifest, host) as view:
            items = reports.task_history(settings, name, limit, offset, view)
            total = reports.history_count(settings, name, view)
        return {"items": results.plain(items), "total": total, "limit": limit, "offset": offset}

    @router.get(
        "/api/runs/{run_id}", response_model=RunView, tags=["runs"], responses={503: PROBLEMS[503]}
    )
    def get_run(
        request: Request,
        actor: Reader,
        run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", description="A run id")],
        host: HostQuery = None,
    ):
        settings, manifest, _ = request.app.state.context.load()
        with _viewing(settings, manifest, host) as view:
            return results.plain(admin.get_run(settings, manifest, run_id, view))

    @router.get(
        "/api/health",
        response_model=Health,
        tags=["reports"],
        responses={503: {"model": Health, "description": "Some task is overdue"}},
    )
    def health(request: Request, actor: Reader, host: HostQuery = None):
        settings, manifest, _ = request.app.state.context.load()
        with _viewing(settings, manifest, host) as view:
            overdue = reports.overdue_tasks(settings, manifest, view)
            scope = reports.scope_of(view)
        body = {"healthy": not overdue, "overdue": results.plain(overdue), "host": scope}
        return JSONResponse(body, status_code=503 if overdue else 200)

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["reports"],
        dependencies=[Depends(bearer)],
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text 0.0.4"},
            503: PROBLEMS[503],
        },
    )
    def metrics_export(request: Request, host: HostQuery = None):
        # A read-only token is enough; METRICS_PUBLIC=true opens it on loopback (_public).
        from agency_cron import metrics

        settings, manifest, _ = request.app.state.context.load()
        with _viewing(settings, manifest, host) as view:
            content = metrics.exposition(settings, manifest, view)
        return Response(content, media_type=metrics.CONTENT_TYPE)

    @router.get(
        "/api/summary",
        response_model=dict[str, Any],
        tags=["reports"],
        responses={503: PROBLEMS[503]},
    )
    def summary(
        request: Request,
        actor: Reader,
        since: Annotated[str, Query(max_length=32, description="Window: 90m, 24h, 7d")] = "24h",
        task: Annotated[list[str] | None, Query(max_length=200)] = None,
        host: HostQuery = None,
    ):
        settings, manifest, _ = request.app.state.context.load()
        if task:
            for name in task:
                admin.get_task(settings, manifest, admin.check_name(name))
        window = reports.parse_since(since)
        with _viewing(settings, manifest, host) as view:
            summary = reports.log_summary(settings, manifest, window, task, view)
        return results.enveloped(summary)  # what `log-summary --json` prints

    @router.get(
        "/api/dashboard",
        response_model=dict[str, Any],
        tags=["dashboard"],
        responses={503: PROBLEMS[503]},
    )
    def dashboard_data(request: Request, actor: Reader, host: HostQuery = None):
        settings, manifest, _ = request.app.state.context.load()
        with _viewing(settings, manifest, host) as view:
            return dashboard.collect(settings, manifest, view=view)

    @router.get(
        "/api/dashboard/body",
        response_class=HTMLResponse,
        tags=["dashboard"],
        responses={
            200: {"content": {"text/html": {}}, "description": "The dashboard's content"},
            503: PROBLEMS[503],
        },
    )
    def dashboard_body(request: Request, actor: Reader, host: HostQuery = None):
        settings, manifest, _ = request.app.state.context.load()
        with _viewing(settings, manifest, host) as view:
            data = dashboard.collect(settings, manifest, view=view)
        return HTMLResponse(dashboard.render_live_body(data))

    @router.get(
        "/",
        response_class=HTMLResponse,
        tags=["dashboard"],
        responses={200: {"content": {"text/html": {}}, "description": "The live dashboard"}},
    )
    def live_page():
        return HTMLResponse(dashboard.render_live_page())

    return router


def _add_toggle(router, action: str, paused: bool) -> None:
    @router.post(
        f"/api/tasks/{{name}}/actions/{action}",
        response_model=TaskView,
        tags=["actions"],
        name=f"{action}_task",
        responses={k: PROBLEMS[k] for k in (403, 502)},
    )
    def toggle(request: Request, actor: Writer, name: NAME):
        return results.plain(admin.set_paused(request.app.state.context, name, paused, actor))


# --- errors and headers --------------------------------------------------------------------

STATUS_OF = (
    (HistoryUnavailable, 503),
    (admin.NotFound, 404),
    (admin.Conflict, 409),
    (admin.Refused, 403),
    (ConfigError, 422),
    (BackendError, 502),
    (CheckFailed, 409),
    (UsageError, 400),
)
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Unprocessable content",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


def problem(status: int, detail: str, errors: list[str] | None = None, headers=None):
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _http_problem(exc: HTTPException) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    detail = exc.detail if isinstance(exc.detail, str) else ""
    return problem(exc.status_code, detail or TITLES.get(exc.status_code, ""), None, headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgencyCronError)
    def library_error(request: Request, exc: AgencyCronError):
        status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 400)
        return problem(status, exc.problems[0], exc.problems)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError):
        errors = [
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in exc.errors()
        ]
        return problem(422, errors[0] if errors else "invalid request", errors)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 413:  # FastAPI's max_body_size: name the setting
            return problem(413, too_large_detail(request.app.state.max_body))
        return _http_problem(exc)

    @app.exception_handler(Exception)
    def unexpected(request: Request, exc: Exception):
        # The trace goes to the server's log, never to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, "internal error; the server's log has the details")


def _add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';"
                " img-src data:; connect-src 'self'; frame-ancestors 'none'; form-action 'none'",
            )
        return response
