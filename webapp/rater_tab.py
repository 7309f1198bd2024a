"""The Rate tab: join with an invite, consent and profile, then blinded A/B trials until a completion code.

The player is our own small HTML widget (no speed or volume controls, no seeking, no file names):
it plays ``stim/<one-time token>`` and reports `play` and `end` to the server, which records them and
enables the rating controls only when both clips have played to the end.
"""

from __future__ import annotations

import html

import gradio as gr

from webapp import rating as R
from webapp.context import AppContext
from webapp.guard import CLIENT_COOKIE, binding_of

PRODUCT = "obt-eval"

PLAYER_JS = r"""
const fill = (slot, frac) => {
  const bar = element.querySelector('.obt-fill[data-slot="' + slot + '"]');
  if (bar) bar.style.width = Math.round(Math.min(1, frac) * 100) + '%';
};
const button = (slot) => element.querySelector('button.obt-play[data-slot="' + slot + '"]');
// Play and end go to the app's own route (cheap, recorded server-side). The answer to the last end says whether
// the server has recorded full plays of both clips: then the ratings unlock here, with no further request (the
// server refuses a submit without them anyway). A busy database answers 503 with Retry-After: wait, send again.
const report = (audio, what, tries = 0) => fetch(audio.getAttribute('src') + '/' + what, {method: 'POST'})
  .then((r) => {
    if (r.status === 503 && tries < 5) {
      const wait = 1000 * (parseFloat(r.headers.get('Retry-After')) || 1) * (1 + tries);
      return new Promise((ok) => setTimeout(ok, wait)).then(() => report(audio, what, tries + 1));
    }
    return r.ok ? r.json() : {ok: false, both: false};
  }).catch(() => ({ok: false, both: false}));
// A fetch that failed (busy server, network) is tried again a few times before the button shows an error.
element.addEventListener('error', (ev) => {
  const a = ev.target;
  if (!a.dataset || !a.dataset.slot) return;
  const tries = parseInt(a.dataset.tries || '0', 10);
  if (tries < 3) {
    a.dataset.tries = String(tries + 1);
    setTimeout(() => a.load(), 1000 * (tries + 1));
  } else {
    const btn = button(a.dataset.slot);
    if (btn) { btn.classList.add('obt-error'); btn.title = 'This recording could not be loaded. Reload the page.'; }
  }
}, true);
element.addEventListener('click', (ev) => {
  const btn = ev.target.closest('button.obt-play');
  if (!btn) return;
  const slot = btn.dataset.slot;
  element.querySelectorAll('audio').forEach((a) => { if (a.dataset.slot !== slot) a.pause(); });
  const audio = element.querySelector('audio[data-slot="' + slot + '"]');
  if (!audio) return;
  btn.classList.remove('obt-error');
  audio.currentTime = 0;
  const p = audio.play();
  if (p && p.catch) p.catch(() => { btn.classList.add('obt-error'); });
});
element.addEventListener('play', (ev) => {
  const a = ev.target;
  if (!a.dataset || !a.dataset.slot) return;
  button(a.dataset.slot).classList.add('obt-playing');
  report(a, 'play');
}, true);
element.addEventListener('pause', (ev) => {
  const a = ev.target;
  if (a.dataset && a.dataset.slot) button(a.dataset.slot).classList.remove('obt-playing');
}, true);
element.addEventListener('timeupdate', (ev) => {
  const a = ev.target;
  if (a.dataset && a.dataset.slot && a.duration) fill(a.dataset.slot, a.currentTime / a.duration);
}, true);
element.addEventListener('ended', (ev) => {
  const a = ev.target;
  if (!a.dataset || !a.dataset.slot) return;
  const btn = button(a.dataset.slot);
  btn.classList.remove('obt-playing');
  fill(a.dataset.slot, 1);
  report(a, 'ended').then((r) => {
    btn.classList.toggle('obt-played', !!r.ok);
    btn.classList.toggle('obt-error', !r.ok);
    if (r.both) {
      const lock = document.querySelector('#obt-lock [data-lock]');
      if (lock) lock.dataset.lock = 'open';
    }
  });
}, true);
"""


def player_html(urls: dict[str, str], ended: set[str] | None = None) -> str:
    """Two play buttons with progress bars over hidden <audio> elements; only one-time tokens appear."""
    if not urls:
        return ""
    ended = ended or set()
    parts = ['<div class="obt-pair">']
    for slot in R.SLOTS:
        token = html.escape(urls[slot], quote=True)
        done = " obt-played" if slot in ended else ""
        full = " obt-full" if slot in ended else ""
        parts.append(
            f'<div class="obt-clip"><button type="button" class="obt-play{done}" data-slot="{slot}" '
            f'aria-label="Play recording {slot}">&#9654; Play {slot}</button>'
            f'<div class="obt-bar"><div class="obt-fill{full}" data-slot="{slot}"></div></div>'
            f'<audio data-slot="{slot}" preload="auto" src="stim/{token}"></audio></div>'
        )
    parts.append("</div>")
    return "".join(parts)


HEADING_JS = r"""
// The trial heading: announced to screen readers, and scrolled to the top of the screen whenever a new trial
// arrives (after Submit a phone would otherwise stay scrolled down at the button, showing empty options).
// Gradio may replace `element` when the value changes: watch the component's stable container instead.
const box = element.closest('#obt-counter') || element.parentElement;
box.setAttribute('aria-live', 'polite');
const show = () => {
  const h = box.querySelector('.obt-trial-title');
  if (!h || box.dataset.shown === h.textContent) return;
  box.dataset.shown = h.textContent;
  requestAnimationFrame(() => {
    h.scrollIntoView({block: 'start', behavior: 'instant'});
    h.focus({preventScroll: true});
  });
};
new MutationObserver(show).observe(box, {childList: true, subtree: true, characterData: true});
show();
"""

FEEDBACK_JS = r"""
// Feedback sits right under the button that caused it; bring it fully on screen when it appears.
const box = element.closest('.block') || element.parentElement;
const reveal = () => {
  const note = box.querySelector('.obt-feedback');
  if (note) requestAnimationFrame(() => note.scrollIntoView({block: 'center', behavior: 'instant'}));
};
new MutationObserver(reveal).observe(box, {childList: true, subtree: true, characterData: true});
"""

LOCK_JS = r"""
// The rating options and the submit button follow the lock box beside the player (data-lock: locked | open).
// They are real disabled controls while locked (keyboard and touch alike); a new trial's markup locks them again,
// and controls Gradio re-creates (a new scale) get the current state too.
const box = element.closest('#obt-lock') || element.parentElement;
const controls = () => document.querySelector('#obt-rate-controls');
const apply = () => {
  const lock = box.querySelector('[data-lock]');
  const locked = !lock || lock.dataset.lock !== 'open';
  const root = controls();
  if (!root) return;
  root.querySelectorAll('.obt-scale input, #obt-submit').forEach((el) => {
    if (el.disabled !== locked) el.disabled = locked;
  });
};
new MutationObserver(apply).observe(box, {childList: true, subtree: true, attributes: true,
                                          attributeFilter: ['data-lock']});
const watchControls = () => {
  const root = controls();
  if (root) new MutationObserver(apply).observe(root, {childList: true, subtree: true});
  else setTimeout(watchControls, 100);
};
watchControls();
apply();
"""

LANDING = f"""<div class="obt-landing">
<h1 class="obt-product">{PRODUCT}</h1>
<p class="obt-tagline">Listening tests for speech technology in your language.</p>
<p>Researchers use {PRODUCT} to find out which computer-made voice sounds most natural in a language. You help by
listening to pairs of short recordings and saying how natural each one sounds. It takes a few minutes and works
on a phone.</p>
<p class="obt-next"><strong>Open the invitation link you received.</strong> If you only have a code, paste it
below.</p>
</div>"""


def heading_html(number: int, total: int, saved: bool) -> str:
    """'Trial n of N' with a progress bar; after a submit, also the confirmation that the last answers are saved."""
    note = '<p class="obt-saved">&#10003; Saved. Here is the next pair.</p>' if saved else ""
    return (f'<h2 class="obt-trial-title" tabindex="-1">Trial {number} of {total}</h2>'
            f'<progress class="obt-progress" value="{number - 1}" max="{total}" aria-label="Trials done">'
            f"</progress>{note}")


def lock_html(ended: set[str], trial: int) -> str:
    """Why the rating options are locked, next to the player that unlocks them; both states are in the page and
    `data-lock` (locked | open) picks one: the player opens it when the server reports both clips fully played.
    `trial` makes every trial's markup new, so the page re-renders it (locked again) with each new trial."""
    missing = [slot for slot in R.SLOTS if slot not in ended]
    state = "open" if not missing else "locked"
    todo = " and ".join(missing) or "A and B"
    return (f'<div class="obt-lockbox" data-lock="{state}" data-trial="{int(trial)}">'
            f'<p class="obt-locked-note"><strong>Ratings locked.</strong> Play {todo} to the end to unlock the '
            f'ratings.</p><p class="obt-unlocked">&#10003; Both recordings played. Rate them below.</p></div>')


def note_html(text: str, kind: str = "error") -> str:
    return f'<p class="obt-feedback obt-feedback-{kind}" role="alert">{html.escape(text)}</p>' if text else ""


def _scale_choices(labels: dict[str, str]) -> list[tuple[str, int]]:
    return [(f"{int(k)} · {v}", int(k)) for k, v in sorted(labels.items(), key=lambda kv: -int(kv[0]))]


_PREF_LABELS = {"A": "A", "B": "B", "none": "No preference"}


DONE_TEXT = {
    "full": ("## This study is full\nThank you for your help! Every set of recordings in this study is already taken "
             "by another listener, so there is nothing left for you to rate.\n\nPlease contact the researcher who "
             "invited you: they can add more recordings for you."),
    "closed": ("## This study is closed\nThank you for your interest! The researcher has closed this study, so "
               "there is nothing to rate now.\n\nPlease contact the researcher who invited you."),
}


def build_rate_tab(ctx: AppContext) -> dict:
    """Create the tab's components inside the current gr.Blocks; returns them by name (for the load event)."""
    state = gr.State(R.RaterSession())
    with gr.Column(visible=True, elem_id="obt-join") as join_box:
        gr.HTML(LANDING, elem_id="obt-landing")
        invite = gr.Textbox(label="Invitation code", max_lines=1, elem_id="obt-invite")
        join_btn = gr.Button("Start", variant="primary", elem_id="obt-start")
        join_note = gr.HTML("", js_on_load=FEEDBACK_JS, elem_id="obt-join-note")
        gr.Markdown("Researchers: log in on the **Admin** tab.", elem_classes=["obt-aside"])
    with gr.Column(visible=False, elem_id="obt-profile") as profile_box:
        gr.Markdown(
            "## Before you start\nYou will hear pairs of short recordings and rate how natural each one sounds. "
            "Your answers are stored under a pseudonym and used only for research on speech technology for "
            "your language. You can stop at any time and continue later with the same link."
        )
        native = gr.Radio(["Yes", "No"], label="Are you a native speaker of the language of this study?",
                          elem_id="obt-native")
        linguist = gr.Radio(["Yes", "No"], label="Are you a linguist (or trained in phonetics)?",
                            elem_id="obt-linguist")
        languages = gr.Textbox(label="Languages you speak (comma-separated)", max_lines=1, elem_id="obt-languages")
        consent = gr.Checkbox(label="I agree to take part and to the use of my answers for research.",
                              elem_id="obt-consent")
        profile_btn = gr.Button("Continue", variant="primary", elem_id="obt-continue")
        profile_note = gr.HTML("", js_on_load=FEEDBACK_JS, elem_id="obt-profile-note")
    with gr.Column(visible=False, elem_id="obt-trial") as trial_box:
        counter = gr.HTML("", js_on_load=HEADING_JS, elem_id="obt-counter")
        question = gr.Markdown(elem_id="obt-question")
        with gr.Accordion("Instructions", open=False, elem_id="obt-instructions-box"):
            instructions = gr.Markdown(elem_id="obt-instructions")
        player = gr.HTML("", js_on_load=PLAYER_JS, elem_id="obt-player")
        lock_note = gr.HTML("", js_on_load=LOCK_JS, elem_id="obt-lock")
        # Locking is the page's job (LOCK_JS, from the lock box) and the server's (it refuses a submit without full
        # plays): a new trial then sends no property updates for these controls, only their cleared values.
        with gr.Column(elem_id="obt-rate-controls"):
            score_a = gr.Radio([], label="Recording A", elem_id="obt-score-a", elem_classes=["obt-scale"])
            score_b = gr.Radio([], label="Recording B", elem_id="obt-score-b", elem_classes=["obt-scale"])
            preference = gr.Radio([], label="", elem_id="obt-preference", elem_classes=["obt-scale"])
            submit_btn = gr.Button("Submit and continue", variant="primary", elem_id="obt-submit")
        submit_note = gr.HTML("", js_on_load=FEEDBACK_JS, elem_id="obt-submit-note")
    with gr.Column(visible=False, elem_id="obt-done") as done_box:
        done_text = gr.Markdown(elem_id="obt-done-text")

    boxes = {"join": join_box, "profile": profile_box, "trial": trial_box, "done": done_box}
    notes = {"join": join_note, "profile": profile_note, "trial": submit_note}
    view_outputs = [*boxes.values(), counter, instructions, question, player, lock_note, score_a, score_b,
                    preference, done_text, *notes.values()]

    def render(screen: R.Screen, session: R.RaterSession, keep: bool = False) -> dict:
        """The page for `screen`; `keep`: the same trial stays (a refused submit), so its scores and player stay."""
        out: dict = {}
        box = "done" if screen.name in ("full", "closed") else screen.name
        if session.shown != box:  # re-sending an unchanged column re-mounts it on some browsers
            out.update({b: gr.Column(visible=(name == box)) for name, b in boxes.items()})
            session.shown = box
        saved = screen.name == "trial" and screen.status == "Saved."
        for name, note in notes.items():
            out[note] = note_html(screen.status) if name == screen.name and not saved else ""
        if keep and screen.name == "trial" and screen.trial is not None \
                and session.page_trial == screen.trial.trial_token:
            pass  # only the note changes: the rater's chosen scores stay
        elif screen.name == "trial" and screen.trial is not None:
            t = screen.trial
            session.page_trial = t.trial_token
            out[counter] = heading_html(t.number, t.total, saved)
            out[player] = player_html(screen.urls, session.ended)
            out[lock_note] = lock_html(session.ended, t.number)
            # The wording and scale are fixed per study: sent once per page, not with every trial.
            first = session.labels_sent != repr(t.scale_labels)
            if first:
                session.labels_sent = repr(t.scale_labels)
                out[instructions] = t.instructions
                out[question] = f"### {t.question}\nPlay **A** and **B** to the end, then rate each one."
                choices = _scale_choices(t.scale_labels)
                out[score_a] = gr.Radio(choices=choices, value=None, label=f"Recording A — {t.question}")
                out[score_b] = gr.Radio(choices=choices, value=None, label=f"Recording B — {t.question}")
                if t.preference_question:
                    pref_choices = [(_PREF_LABELS.get(o, o), o) for o in t.preference_options]
                    out[preference] = gr.Radio(choices=pref_choices, value=None, visible=True,
                                               label=f"{t.preference_question} (optional)")
                else:
                    out[preference] = gr.Radio(choices=[], value=None, visible=False)
            else:
                for radio in (score_a, score_b, preference):
                    out[radio] = None  # a cleared value, not a property update
        else:
            session.page_trial = None
            out[player] = ""
            out[lock_note] = ""
        if screen.name == "done":
            saved_line = "Saved. " if screen.status == "Saved." else ""  # the last submit was recorded too
            out[done_text] = (
                f"## Thank you!\n{saved_line}You have rated every recording assigned to you.\n\n"
                f"Your completion code: **`{screen.code}`**\n\nYou can close this page."
            )
        elif screen.name in DONE_TEXT:
            out[done_text] = DONE_TEXT[screen.name]
        return out

    def bind(session: R.RaterSession, request: gr.Request | None) -> R.RaterSession:
        """The audio links minted in this call work only with this browser's session cookie (webapp.guard)."""
        cookies = getattr(request, "cookies", None) if request is not None else None
        session.binding = binding_of(cookies.get(CLIENT_COOKIE) if cookies else None)
        return session

    def on_load(session: R.RaterSession, request: gr.Request) -> dict:
        token = request.query_params.get("invite") if request is not None else None
        if not token:
            return render(R.Screen("join"), session)
        return render(R.open_invite(ctx, bind(session, request), token), session)

    def on_join(code: str, session: R.RaterSession, request: gr.Request) -> dict:
        return render(R.open_invite(ctx, bind(session, request), code), session)

    def on_profile(n: str, li: str, langs: str, ok: bool, session: R.RaterSession, request: gr.Request) -> dict:
        return render(R.save_profile(ctx, bind(session, request), n, li, langs, ok), session)

    # A submit changes only the trial (or ends the study): it names just those outputs, since Gradio rebuilds
    # every named output the answer leaves out, which costs the server more than sending a value.
    submit_outputs = [trial_box, done_box, counter, player, lock_note, score_a, score_b, preference, submit_note,
                      done_text]

    def on_submit(a: int | None, b: int | None, pref: str | None, session: R.RaterSession,
                  request: gr.Request) -> dict:
        screen, recorded = R.submit(ctx, bind(session, request), a, b, pref)
        if screen.name in ("join", "profile") and session.trial is not None:
            # the next trial could not be served (a busy database): stay on this one, say so by the button
            screen = R.Screen("trial", screen.status or R.BUSY, trial=session.trial, urls=dict(session.urls),
                              instructions=session.trial.instructions)
        out = render(screen, session, keep=not recorded)
        return {output: value for output, value in out.items() if any(output is o for o in submit_outputs)}

    fast = {"concurrency_limit": None, "show_progress": "hidden"}
    join_btn.click(on_join, [invite, state], view_outputs, api_name="rater_join", **fast)
    invite.submit(on_join, [invite, state], view_outputs, api_visibility="private", **fast)
    profile_btn.click(on_profile, [native, linguist, languages, consent, state], view_outputs,
                      api_name="rater_profile", **fast)
    submit_btn.click(on_submit, [score_a, score_b, preference, state], submit_outputs, api_name="rater_submit",
                     **fast)
    return {"state": state, "outputs": view_outputs, "on_load": on_load}
