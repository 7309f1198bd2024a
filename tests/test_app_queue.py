"""The app's Gradio queue and sessions: no per-event or per-session work that grows with the raters, the app's
size or its uptime (webapp.gradio_tuning)."""

from __future__ import annotations


def test_the_queue_does_not_rebuild_its_event_summary_after_every_event(tmp_path):
    from webapp.config import load_config
    from webapp.context import make_context
    from webapp.server import build_blocks

    blocks = build_blocks(make_context(load_config(tmp_path / "ws", "127.0.0.1", 7860, False)))
    queue = blocks._queue
    # Gradio's default (1 and 10,000) re-read up to 10,000 events into pandas after each event: ~8 % of the
    # app's CPU with 50 raters (py-spy), growing with uptime
    assert queue.ANAYLTICS_CACHE_FREQUENCY >= 10_000
    assert queue.ANALYTICS_MAX_EVENTS <= 1_000
    queue.events_recorded = queue.ANAYLTICS_CACHE_FREQUENCY - 1
    records = [{"function": "submit", "status": "success", "process_time": 0.01}]
    assert queue.compute_analytics_summary(records) == {"functions": {}}  # cached: no DataFrame built


def test_a_new_browser_session_builds_only_the_configs_its_events_touch(tmp_path):
    import gradio.state_holder

    from webapp.config import load_config
    from webapp.gradio_tuning import LazySessionState
    from webapp.server import create_app

    create_app(load_config(tmp_path / "ws", "127.0.0.1", 7860, False))
    assert gradio.state_holder.SessionState is LazySessionState  # what Gradio's state holder makes per browser
    demo = next(b for b in _all_blocks() if len(b.blocks) > 100)
    state = gradio.state_holder.SessionState(demo)
    assert dict.__len__(state.config_values) == 0  # nothing built for the ~180 blocks of the page
    some = next(iter(demo.blocks))
    assert some in state.config_values and state.config_values[some]["id"] == some  # built when read
    assert dict.__len__(state.config_values) == 1


def test_objects_built_at_start_up_are_left_out_of_full_garbage_collections():
    import gc

    from webapp.gradio_tuning import settle_memory

    before = gc.get_freeze_count()
    try:
        settle_memory()
        assert gc.get_freeze_count() > max(before, 10_000)
    finally:
        gc.unfreeze()


def _all_blocks():
    import gc

    import gradio as gr

    return [o for o in gc.get_objects() if type(o) is gr.Blocks]


def test_the_app_runs_callbacks_and_routes_on_a_few_threads(monkeypatch):
    """Forty threads share one GIL-bound core forty ways (a 5 ms write then holds SQLite's lock for 25 ms+)."""
    import anyio
    import anyio.to_thread

    from webapp.gradio_tuning import DEFAULT_THREADS, ENV_THREADS, limit_worker_threads

    async def cap() -> tuple[int, int]:
        return limit_worker_threads(), anyio.to_thread.current_default_thread_limiter().total_tokens

    monkeypatch.delenv(ENV_THREADS, raising=False)
    assert anyio.run(cap) == (DEFAULT_THREADS, DEFAULT_THREADS) and DEFAULT_THREADS < 40
    monkeypatch.setenv(ENV_THREADS, "12")  # a remote PostgreSQL: requests wait on the network, more threads help
    assert anyio.run(cap) == (12, 12)
