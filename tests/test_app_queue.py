"""The app's Gradio queue: no per-event bookkeeping that grows with the number of raters or the app's uptime."""

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
