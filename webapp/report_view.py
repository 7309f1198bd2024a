"""The decision report inside the app: an experiment's report page, cleaned and embedded, and its downloads.

The report is a complete HTML page written next to its files (figures/*.png, report.json, summary.csv).
Embedded in the app it must not reach anything else on the server: the page is rebuilt from an allow-list
of tags and attributes (no script, no event handler, no frame, no javascript: link); an image that is not
already inline is read only from inside the report's own folder and inlined as a data: URI; a link to one
of its files becomes a one-time download link (`webapp.downloads`, minted by this logged-in callback).
Anything that points outside the folder is dropped.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from obt_eval.errors import BadInputError
from webapp.auth import AdminSession, require_admin
from webapp.context import AppContext
from webapp.downloads import DOWNLOADS, Downloads

MAX_INLINE_BYTES = 5 * 1024 * 1024  # a figure or a file offered for download
ALLOWED_TAGS = {"a", "b", "br", "caption", "code", "div", "em", "figcaption", "figure", "h1", "h2", "h3", "h4",
                "hr", "i", "img", "li", "ol", "p", "pre", "section", "small", "span", "strong", "sub", "sup",
                "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "details", "summary"}
VOID_TAGS = {"br", "hr", "img"}
DROPPED_WITH_CONTENT = {"script", "iframe", "object", "embed", "template", "noscript", "svg", "math", "title",
                        "textarea", "select", "button", "form"}
ALLOWED_ATTRS = {"class", "alt", "title", "colspan", "rowspan", "href", "src"}
DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".html": "text/html",
               ".json": "application/json", ".csv": "text/csv"}
DOWNLOADABLE = (".html", ".json", ".csv", ".png")
DOWNLOAD_NAMES = {"index.html": "HTML page", "report.json": "JSON (every number)", "summary.csv": "CSV summary"}


def confined_file(folder: Path, ref: str) -> Path:
    """The file `ref` names relative to `folder`, symlinks resolved; BadInputError if it leads outside `folder`."""
    if not ref or "\0" in ref or "://" in ref or ref.startswith(("/", "\\", "~")) or ":" in ref.split("/")[0]:
        raise BadInputError(f"{ref[:80]!r} is not a file of the report")
    root = Path(folder).resolve()
    path = (root / ref.split("#")[0].split("?")[0]).resolve()
    if not path.is_relative_to(root) or path == root:
        raise BadInputError(f"{ref[:80]!r} lies outside the report's folder")
    if not path.is_file():
        raise BadInputError(f"the report has no file {ref[:80]!r}")
    return path


def _safe_css(css: str) -> str:
    """The report's own stylesheet, unless it could fetch something (url(), @import) or escape its <style>."""
    lowered = css.lower()
    if any(bad in lowered for bad in ("url(", "@import", "expression(", "</", "<!--", "javascript:")):
        return ""
    return css


class _Cleaner(HTMLParser):
    def __init__(self, folder: Path, link_for: Callable[[Path], str | None]):
        super().__init__(convert_charrefs=True)
        self.folder = folder
        self.link_for = link_for
        self.out: list[str] = []
        self.css: list[str] = []
        self.skip = 0  # depth inside a dropped element
        self.in_style = False
        self.in_body = False
        self.dropped: list[str] = []  # what was left out, for the tests and the log

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
            return
        if tag == "style":
            self.in_style = True
            return
        if tag in DROPPED_WITH_CONTENT:
            self.skip += 1
            return
        if self.skip or tag not in ALLOWED_TAGS:
            return
        kept = []
        for key, value in attrs:
            if key not in ALLOWED_ATTRS or value is None:
                continue
            if key == "href":
                value = self._href(value)
            elif key == "src":
                value = self._src(value) if tag == "img" else None
            if value is not None:
                kept.append(f' {key}="{html.escape(value, quote=True)}"')
        if tag == "img" and not any(k.startswith(" src=") for k in kept):
            self.out.append("<em class='obt-missing'>[figure not available]</em>")
            return
        if tag == "a" and any(k.startswith(' href="download/') for k in kept):
            kept.append(" download")
        elif tag == "a" and any(k.startswith(' href="http') for k in kept):
            kept.append(' target="_blank" rel="noopener noreferrer"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        elif tag in DROPPED_WITH_CONTENT:
            self.skip = max(0, self.skip - 1)
        elif not self.skip and tag in ALLOWED_TAGS and tag not in VOID_TAGS:
            self.out.append(f"</{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css.append(data)
        elif not self.skip and self.in_body:
            self.out.append(html.escape(data, quote=False))

    def _href(self, value: str) -> str | None:
        value = value.strip()
        if value.startswith("#") or re.match(r"^https?://", value, re.I):
            return value
        if re.match(r"^[a-z][a-z0-9+.-]*:", value, re.I):  # javascript:, data:, file: …
            self.dropped.append(value[:80])
            return None
        try:
            path = confined_file(self.folder, value)
        except BadInputError:
            self.dropped.append(value[:80])
            return None
        return self.link_for(path) if path.suffix.lower() in DOWNLOADABLE else None

    def _src(self, value: str) -> str | None:
        value = value.strip()
        if DATA_IMAGE.match(value):
            return value
        try:
            path = confined_file(self.folder, value)
        except BadInputError:
            self.dropped.append(value[:80])
            return None
        kind = MEDIA_TYPES.get(path.suffix.lower(), "")
        if not kind.startswith("image/") or path.stat().st_size > MAX_INLINE_BYTES:
            self.dropped.append(value[:80])
            return None
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def embed_report(page: str, folder: Path, link_for: Callable[[Path], str | None] = lambda _p: None) -> tuple[str, list]:
    """(HTML to put inside the app, what was dropped) from a report page whose files live in `folder`."""
    cleaner = _Cleaner(Path(folder), link_for)
    if "<body" not in page.lower():
        cleaner.in_body = True
    cleaner.feed(page)
    cleaner.close()
    css = _safe_css("".join(cleaner.css))
    style = f"<style>{css}</style>" if css else ""
    return f"{style}<div class='obt-report-embed'>{''.join(cleaner.out)}</div>", cleaner.dropped


def _minter(downloads: Downloads, experiment: str) -> Callable[[Path], str | None]:
    minted: dict[Path, str] = {}

    def link_for(path: Path) -> str | None:
        if path not in minted:
            if path.stat().st_size > MAX_INLINE_BYTES:
                return None
            filename = f"{experiment}-{path.name}"
            minted[path] = "download/" + downloads.add(filename, path.read_bytes(),
                                                       MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))
        return minted[path]

    return link_for


def report_view(ctx: AppContext, session: AdminSession, name: object,
                downloads: Downloads = DOWNLOADS) -> dict[str, str]:
    """The experiment's decision report, freshly rendered with the ratings so far, ready to embed.

    Returns ``{"html": the embedded report, "downloads": links to its HTML, JSON and CSV}``.
    """
    from pipelines.experiments import api
    from webapp.experiments import known

    require_admin(session)
    checked = known(ctx, name)
    files = api.write_report(ctx.workspace, checked)
    folder = api.report_dir(ctx.workspace, checked).resolve()
    page_path = confined_file(folder, Path(files["html"]).resolve().relative_to(folder).as_posix())
    link_for = _minter(downloads, checked)
    body, _dropped = embed_report(page_path.read_text(encoding="utf-8"), folder, link_for)
    links = []
    for filename, label in DOWNLOAD_NAMES.items():
        try:
            url = link_for(confined_file(folder, filename))
        except BadInputError:
            continue
        if url:
            links.append(f"<a class='obt-download' href='{html.escape(url)}' download>{html.escape(label)}</a>")
    bar = ("<div class='obt-downloads'><span>Download the report (one-time links, valid 10 minutes):</span> "
           + " ".join(links) + "</div>") if links else ""
    return {"html": body, "downloads": bar}
