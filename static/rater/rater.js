// The rater's page (served by webapp/rater_page.py): shows the screen the server answers, plays the two clips,
// reports play and end to the server, and sends the answers. The server decides everything that matters (which
// trial, whether both clips were played to the end, whether a rating counts); this page only shows it.
(() => {
  'use strict';
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  const SCREENS = ['join', 'profile', 'trial', 'done'];
  const NOTES = {join: '#obt-join-note', profile: '#obt-profile-note', trial: '#obt-submit-note'};
  const OFFLINE = 'The connection failed. Check your connection, then try again.';
  const state = {invite: null, trial: null, ended: new Set(), busy: false};

  // ---- talking to the server ------------------------------------------------------------------------------------
  const pause = (ms) => new Promise((ok) => setTimeout(ok, ms));
  // A POST, sent again after a dropped connection (twice) or a busy database's 503 (its Retry-After, 4 times);
  // the last reply, or null when the connection stayed down.
  const send = async (path, options) => {
    for (let tries = 0; ; tries += 1) {
      let reply;
      try {
        reply = await fetch(path, {method: 'POST', credentials: 'same-origin', ...options});
      } catch (err) {
        if (tries < 2) { await pause(1000 * (tries + 1)); continue; }
        return null;
      }
      if (reply.status !== 503 || tries >= 4) return reply;
      await pause(1000 * (parseFloat(reply.headers.get('Retry-After')) || 1) * (tries + 1));
    }
  };
  const FAILED = 'Something went wrong. Reload the page and try again.';
  const post = async (path, body) => {
    const reply = await send(path, {headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    if (!reply) return {error: OFFLINE};
    try {
      const data = await reply.json();
      return reply.ok ? data : {error: data.error || FAILED};
    } catch (err) {
      return {error: FAILED};
    }
  };
  // The answer chosen in a group of radio buttons (null when none is).
  const chosen = (form, name) => { const el = $(`input[name="${name}"]:checked`, form); return el ? el.value : null; };

  // ---- feedback next to the button that caused it ---------------------------------------------------------------
  const note = (screen, text) => {
    const slot = $(NOTES[screen]);
    if (!slot) return;
    slot.replaceChildren();
    if (!text) return;
    const p = document.createElement('p');
    p.className = 'obt-feedback obt-feedback-error';
    p.setAttribute('role', 'alert');
    p.textContent = text;
    slot.append(p);
    requestAnimationFrame(() => p.scrollIntoView({block: 'center', behavior: 'instant'}));
  };

  const show = (name) => {
    $('#obt-loading').hidden = true;
    SCREENS.forEach((s) => { $('#obt-' + s).hidden = s !== name; });
  };

  const working = (button, on, label) => {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = label;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      button.removeAttribute('aria-busy');
      button.disabled = false;
    }
  };

  // ---- locking: options and submit stay disabled until the server has recorded full plays of A and B -----------
  const locked = () => !(state.ended.has('A') && state.ended.has('B'));
  const applyLock = () => {
    const isLocked = locked();
    const box = $('#obt-lock .obt-lockbox');
    box.dataset.lock = isLocked ? 'locked' : 'open';
    const todo = ['A', 'B'].filter((s) => !state.ended.has(s));
    $('.obt-todo', box).textContent = todo.length ? todo.join(' and ') : 'A and B';
    $$('#obt-rate-controls .obt-scale input').forEach((el) => { el.disabled = isLocked; });
    if (!state.busy) $('#obt-submit').disabled = isLocked;
  };

  // ---- building a trial -----------------------------------------------------------------------------------------
  const options = (fieldset, name, choices, legend) => {
    $('legend', fieldset).textContent = legend;
    const box = $('.obt-options', fieldset);
    box.replaceChildren(...choices.map(([value, text]) => {
      const label = document.createElement('label');
      const input = document.createElement('input');
      input.type = 'radio';
      input.name = name;
      input.value = String(value);
      const span = document.createElement('span');
      span.textContent = text;
      label.append(input, span);
      return label;
    }));
  };

  const setAudio = (urls) => {
    $$('#obt-player audio').forEach((audio) => {
      const slot = audio.dataset.slot;
      audio.pause();
      delete audio.dataset.tries;
      audio.src = urls[slot] || '';
      const button = $(`button.obt-play[data-slot="${slot}"]`);
      const done = state.ended.has(slot);
      button.classList.remove('obt-playing', 'obt-error');
      button.classList.toggle('obt-played', done);
      $(`.obt-fill[data-slot="${slot}"]`).style.width = done ? '100%' : '0';
    });
  };

  const showTrial = (trial, saved) => {
    state.trial = trial;
    state.ended = new Set(trial.ended || []);
    const title = $('#obt-counter .obt-trial-title');
    title.textContent = `Trial ${trial.number} of ${trial.total}`;
    const progress = $('#obt-counter .obt-progress');
    progress.max = trial.total;
    progress.value = trial.number - 1;
    $('#obt-counter .obt-saved').hidden = !saved;
    document.title = `Trial ${trial.number} of ${trial.total} — obt-eval`;
    $('#obt-question').textContent = trial.question;
    $('#obt-instructions').innerHTML = trial.instructions;  // rendered on the server with raw HTML escaped
    $('#obt-instructions-box').hidden = !trial.instructions;
    options($('#obt-score-a'), 'a', trial.scale, `Recording A — ${trial.question}`);
    options($('#obt-score-b'), 'b', trial.scale, `Recording B — ${trial.question}`);
    const pref = $('#obt-preference');
    pref.hidden = !trial.preference;
    if (trial.preference) {
      options(pref, 'preference', trial.preference.options, `${trial.preference.question} (optional)`);
    } else {
      $('.obt-options', pref).replaceChildren();
    }
    setAudio(trial.audio || {});
    applyLock();
    // The new trial's heading at the top of the screen: after Submit a phone would otherwise stay scrolled down.
    requestAnimationFrame(() => {
      title.scrollIntoView({block: 'start', behavior: 'instant'});
      title.focus({preventScroll: true});
    });
  };

  const showEnd = (answer) => {
    const kind = answer.screen === 'done' ? 'done' : answer.screen;
    $$('#obt-done-text [data-end]').forEach((el) => { el.hidden = el.dataset.end !== kind; });
    if (kind === 'done') {
      $('#obt-done-text .obt-code').textContent = answer.code || '';
      $('#obt-done-text .obt-saved-line').hidden = !answer.saved;
    }
    setAudio({});
    show('done');
    document.title = 'Thank you — obt-eval';
    window.scrollTo(0, 0);
  };

  // ---- one answer from the server -------------------------------------------------------------------------------
  const render = (answer, from) => {
    if (answer.error) {
      if ($('#obt-' + from).hidden) show(from);  // the first call failed: the landing page, with the reason
      note(from, answer.error);
      return;
    }
    if (answer.invite && answer.invite !== state.invite) {
      state.invite = answer.invite;
      const url = new URL(location.href);
      url.searchParams.set('invite', answer.invite);  // a reload (or a bookmark) resumes where the rater is
      history.replaceState(null, '', url);
    }
    const screen = answer.screen;
    if (screen === 'trial') {
      if (answer.trial) showTrial(answer.trial, answer.saved);
      show('trial');
      // saved, but the next trial could not be served: say both (a second Submit moves on)
      note('trial', answer.keep && answer.saved ? `Saved. ${answer.status}` : answer.status);
      return;
    }
    Object.keys(NOTES).forEach((s) => { if (s !== screen) note(s, ''); });
    if (screen === 'join' || screen === 'profile') {
      show(screen);
      note(screen, answer.status);
      if (screen === 'profile') window.scrollTo(0, 0);
      return;
    }
    showEnd(answer);
  };

  // ---- the forms ------------------------------------------------------------------------------------------------
  $('#obt-join-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = $('#obt-start');
    working(button, true, 'Opening…');
    const answer = await post('rate/api/open', {invite: $('#obt-invite-input').value});
    working(button, false);
    render(answer, 'join');
  });

  $('#obt-profile-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const button = $('#obt-continue');
    working(button, true, 'Saving…');
    const answer = await post('rate/api/profile', {
      invite: state.invite, native: chosen(form, 'native'), linguist: chosen(form, 'linguist'),
      languages: $('#obt-languages-input').value, consent: $('#obt-consent input').checked,
    });
    working(button, false);
    render(answer, 'profile');
  });

  // An answer changed: the last complaint about the answers no longer applies.
  $('#obt-rate-controls').addEventListener('change', () => note('trial', ''));

  $('#obt-rate-controls').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (state.busy || !state.trial) return;
    const form = ev.target;
    const a = chosen(form, 'a');
    const b = chosen(form, 'b');
    if (a === null || b === null) { note('trial', 'Rate both recordings before you continue.'); return; }
    const button = $('#obt-submit');
    state.busy = true;
    working(button, true, 'Saving…');
    const answer = await post('rate/api/submit', {invite: state.invite, trial: state.trial.token,
                                                  a: parseInt(a, 10), b: parseInt(b, 10),
                                                  preference: chosen(form, 'preference')});
    state.busy = false;
    working(button, false);
    render(answer, 'trial');
    if (!$('#obt-trial').hidden) applyLock();
  });

  // ---- the player: two buttons over hidden <audio>; play and end are reported to the server ---------------------
  const player = $('#obt-player');
  const button = (slot) => $(`button.obt-play[data-slot="${slot}"]`, player);
  const fill = (slot, frac) => { $(`.obt-fill[data-slot="${slot}"]`, player).style.width = `${Math.round(Math.min(1, frac) * 100)}%`; };
  const report = async (audio, what) => {
    const reply = await send(`${audio.getAttribute('src')}/${what}`, {});
    try {
      return reply && reply.ok ? await reply.json() : {ok: false, both: false};
    } catch (err) {
      return {ok: false, both: false};
    }
  };

  player.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button.obt-play');
    if (!btn) return;
    const slot = btn.dataset.slot;
    $$('audio', player).forEach((a) => { if (a.dataset.slot !== slot) a.pause(); });  // one clip at a time
    const audio = $(`audio[data-slot="${slot}"]`, player);
    if (!audio.getAttribute('src')) return;
    btn.classList.remove('obt-error');
    audio.currentTime = 0;
    const playing = audio.play();
    if (playing && playing.catch) playing.catch(() => btn.classList.add('obt-error'));
  });
  // A fetch that failed (busy server, network) is tried again a few times before the button shows an error.
  player.addEventListener('error', (ev) => {
    const a = ev.target;
    if (!a.dataset || !a.dataset.slot || !a.getAttribute('src')) return;
    const tries = parseInt(a.dataset.tries || '0', 10);
    if (tries < 3) {
      a.dataset.tries = String(tries + 1);
      setTimeout(() => a.load(), 1000 * (tries + 1));
    } else {
      button(a.dataset.slot).classList.add('obt-error');
      button(a.dataset.slot).title = 'This recording could not be loaded. Reload the page.';
    }
  }, true);
  player.addEventListener('play', (ev) => {
    const a = ev.target;
    button(a.dataset.slot).classList.add('obt-playing');
    report(a, 'play');
  }, true);
  player.addEventListener('pause', (ev) => { button(ev.target.dataset.slot).classList.remove('obt-playing'); }, true);
  player.addEventListener('timeupdate', (ev) => {
    const a = ev.target;
    if (a.duration) fill(a.dataset.slot, a.currentTime / a.duration);
  }, true);
  player.addEventListener('ended', (ev) => {
    const a = ev.target;
    const slot = a.dataset.slot;
    const trial = state.trial;
    const btn = button(slot);
    btn.classList.remove('obt-playing');
    fill(slot, 1);
    report(a, 'ended').then((r) => {
      if (state.trial !== trial) return;  // an answer about a trial already left behind
      btn.classList.toggle('obt-played', !!r.ok);
      btn.classList.toggle('obt-error', !r.ok);
      if (r.ok) state.ended.add(slot);
      if (r.both) { state.ended.add('A'); state.ended.add('B'); }
      applyLock();
    });
  }, true);

  // ---- start: an invitation link opens the study at once; otherwise the landing page asks for the code ----------
  const invite = new URLSearchParams(location.search).get('invite');
  if (invite) {
    state.invite = invite;
    post('rate/api/open', {invite}).then((answer) => render(answer, 'join'));
  } else {
    show('join');
  }
})();
