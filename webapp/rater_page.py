"""The rater's page: one small HTML page at ``/rate`` and three JSON calls, outside Gradio.

Raters are the many users (50 at once, on phones over poor connections); researchers are few. The rater's
side therefore skips Gradio's queue and session state: the page (``static/rater/``: one HTML file with its
CSS and script, ~20 KB) sends the rater's invite and answers as JSON, each call is one function of
`webapp.rating` run on the app's own small thread pool, and the server keeps no state between calls, so
any app replica can answer any call. A call costs a few milliseconds of work, not a Gradio event's ten
thread hops and its page state.

    POST rate/api/open     {"invite"}                                          join or resume
    POST rate/api/profile  {"invite", "native", "linguist", "languages", "consent"}
    POST rate/api/submit   {"invite", "trial", "a", "b", "preference"}        rate the shown trial, get the next

Each answers a screen: ``{"screen": join|profile|trial|done|full|closed, "status", "saved", "keep",
"trial": {...}, "code"}`` (``keep``: the page stays on its trial, e.g. a refused submit). Nothing in it
names a system or a file: trial and audio tokens are random, the wording is the study's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webapp import rating as R
from webapp.context import AppContext
from webapp.guard import CLIENT_COOKIE, binding_of

PAGE_DIR = Path(__file__).resolve().parent.parent / "static" / "rater"
RATER_THREADS = 2  # the rater calls' own threads (the audio routes have theirs; webapp.gradio_tuning caps Gradio's)
NO_STORE = {"Cache-Control": "no-store"}
_PREFERENCE_LABELS = {"A": "A", "B": "B", "none": "No preference"}
# Instructions are the researcher's Markdown; raw HTML in them is shown as text, never run in a rater's page.
_MARKDOWN = MarkdownIt("js-default")


class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invite: str = Field(max_length=R.MAX_INVITE_CHARS)


class _Profile(_Call):
    native: Literal["Yes", "No"] | None = None
    linguist: Literal["Yes", "No"] | None = None
    # far over the rating module's own limit, so a long list gets its friendly message there
    languages: str = Field("", max_length=64 * R.MAX_LANGUAGES_CHARS)
    consent: bool = False


class _Submit(_Call):
    trial: str = Field(max_length=64)
    a: int | None = Field(None, ge=-1000, le=1000)
    b: int | None = Field(None, ge=-1000, le=1000)
    preference: str | None = Field(None, max_length=32)


@lru_cache(maxsize=1)
def page_html() -> str:
    """The page with its stylesheet and script inlined: one fetch on a slow connection, nothing else to load."""
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    css = (PAGE_DIR / "rater.css").read_text(encoding="utf-8")
    script = (PAGE_DIR / "rater.js").read_text(encoding="utf-8")
    return page.replace("/*RATER_CSS*/", css).replace("/*RATER_JS*/", script)


def _scale(labels: dict[str, str]) -> list[list]:
    return [[int(k), f"{int(k)} · {v}"] for k, v in sorted(labels.items(), key=lambda kv: -int(kv[0]))]


def screen_json(screen: R.Screen, invite: str | None, page_trial: str | None = None) -> dict:
    """What the page shows next, as JSON (see the module docstring)."""
    out: dict = {"screen": screen.name, "status": screen.status, "saved": screen.saved, "keep": False}
    if screen.name != "join" and invite:
        out["invite"] = invite  # the cleaned token (from a pasted link): the page puts it in its address
    if screen.name == "trial":
        t = screen.trial
        if t is None or t.trial_token == page_trial:
            out["keep"] = True  # the page stays on its trial: its player and the rater's chosen scores stay
        else:
            out["trial"] = {
                "token": t.trial_token, "number": t.number, "total": t.total, "question": t.question,
                "instructions": _MARKDOWN.render(t.instructions or ""), "scale": _scale(t.scale_labels),
                "preference": ({"question": t.preference_question,
                                "options": [[o, _PREFERENCE_LABELS.get(o, o)] for o in t.preference_options]}
                               if t.preference_question else None),
                "audio": {slot: f"stim/{token}" for slot, token in screen.urls.items()},
                "ended": sorted(screen.ended),
            }
    if screen.name == "done":
        out["code"] = screen.code
    return out


def _session(request: Request, invite: str) -> R.RaterSession:
    """A session for one call: the audio links it mints work only with this browser's cookie (webapp.guard)."""
    return R.RaterSession(invite=R.clean_invite(invite) or None,
                          binding=binding_of(request.cookies.get(CLIENT_COOKIE)))


def router(ctx: AppContext, threads: int = RATER_THREADS) -> APIRouter:
    api = APIRouter()
    limiter = anyio.CapacityLimiter(threads)

    async def answer(request: Request, model: type[BaseModel], work) -> Response:
        if not (request.headers.get("content-type") or "").startswith("application/json"):
            return JSONResponse({"error": "send the answers as JSON (application/json)"}, status_code=415,
                                headers=NO_STORE)
        try:
            call = model.model_validate(json.loads(await request.body() or b"null"))
        except (ValueError, ValidationError):  # the field names only, never the values sent back
            return JSONResponse({"error": "this request is not valid: reload the page and try again"},
                                status_code=400, headers=NO_STORE)
        result = await anyio.to_thread.run_sync(work, call, _session(request, call.invite), limiter=limiter)
        return JSONResponse(result, headers=NO_STORE)

    @api.get("/rate", include_in_schema=False)
    async def page() -> HTMLResponse:  # async: a cached string needs no worker thread
        return HTMLResponse(page_html(), headers={**NO_STORE, "X-Content-Type-Options": "nosniff",
                                                  "Referrer-Policy": "no-referrer"})

    @api.post("/rate/api/open", include_in_schema=False)
    async def open_invite(request: Request) -> Response:
        def work(call: _Call, session: R.RaterSession) -> dict:
            return screen_json(R.open_invite(ctx, session, call.invite), session.invite)
        return await answer(request, _Call, work)

    @api.post("/rate/api/profile", include_in_schema=False)
    async def profile(request: Request) -> Response:
        def work(call: _Profile, session: R.RaterSession) -> dict:
            screen = R.save_profile(ctx, session, call.native, call.linguist, call.languages, call.consent)
            return screen_json(screen, session.invite)
        return await answer(request, _Profile, work)

    @api.post("/rate/api/submit", include_in_schema=False)
    async def submit(request: Request) -> Response:
        def work(call: _Submit, session: R.RaterSession) -> dict:
            screen, _ = R.submit(ctx, session, call.a, call.b, call.preference, trial_token=call.trial)
            return screen_json(screen, session.invite, page_trial=call.trial)
        return await answer(request, _Submit, work)

    return api
