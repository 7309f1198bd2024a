"""What Gradio does per event, per session or per idle millisecond, switched off or made lazy: the researchers'
Gradio app shares its process and two cores with the raters' page and audio, so its idle work and its stalls
are theirs too (each measured with py-spy under `benchmarks/app_load.py`).

Import this module before any Blocks exists (the analytics settings are read when a queue is created).
Written against gradio 6.x (pyproject pins <7); `tests/test_app_queue.py` checks the analytics settings, the
lazy session configs, the frozen start-up objects and the thread cap (the queue poll is a plain setting).
"""

from __future__ import annotations

import gc
import os
from typing import Any

import gradio as gr
import gradio.state_holder

# The queue rebuilds a pandas summary of its last 10,000 events after EVERY event (for a monitoring page we do not
# serve): with 50 raters ~8 % of the app's CPU, growing with uptime. Summarise rarely, over few events.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "200")

# The queue polls for work every 1 ms when it has none: a thousand wake-ups a second, each taking the GIL from
# the requests being served. Every 5 ms is plenty (an event waits at most 5 ms more to start).
QUEUE_POLL_SECONDS = 0.005


def tune_queue(blocks: gr.Blocks) -> None:
    blocks._queue.sleep_when_free = QUEUE_POLL_SECONDS


class _ConfigsOnDemand(dict):
    """A session's per-block configs, built when first used instead of all at the session's first event.

    Gradio builds the config of every block of the app (~180 here: the Admin and Results tabs too) for each new
    browser session, ~0.1-0.3 s with the GIL held, stalling every other request (the raters' too). Only the
    blocks a session's events touch are ever read back. (Gradio reads them all only for "deep links", a route the
    app closes: `webapp.guard.CLOSED_PATHS`.)
    """

    def __init__(self, blocks_config: Any, ids: set[int]):
        super().__init__()
        self._blocks_config = blocks_config
        self._ids = ids

    def __missing__(self, key: int) -> Any:
        if key not in self._ids:
            raise KeyError(key)
        config = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
        self[key] = config
        return config

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._ids


class LazySessionState(gradio.state_holder.SessionState):
    def __init__(self, blocks: gr.Blocks):
        import copy

        self.blocks_config = copy.copy(blocks.default_config)
        self.config_values = _ConfigsOnDemand(self.blocks_config,
                                              {k for k in self.blocks_config.blocks if k in blocks.blocks})
        self.state_data = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


def lazy_session_state() -> None:
    """New browser sessions build block configs on demand (see `_ConfigsOnDemand`)."""
    gradio.state_holder.SessionState = LazySessionState


# Threads that run callbacks and plain routes at once (Starlette's and Gradio's default: 40). The app's work is
# Python holding the GIL, so 40 threads only share one core 40 ways: a database write that needs 5 ms of CPU then
# held SQLite's write lock for 25 ms and more (p95), and every other writer queued behind it. A few threads keep
# each request's share of the core high; requests wait their turn instead (measured: p95 next-trial 570 -> 250 ms,
# benchmarks/app_load.py, 50 raters, 2 cores). More help only while requests wait on a remote database.
ENV_THREADS = "OBT_EVAL_APP_THREADS"
DEFAULT_THREADS = 4


def limit_worker_threads() -> int:
    """Cap the event loop's worker threads at $OBT_EVAL_APP_THREADS (default 4); call inside the running loop."""
    import anyio.to_thread

    threads = max(1, int(os.environ.get(ENV_THREADS) or DEFAULT_THREADS))
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    return threads


def settle_memory() -> None:
    """Exempt everything built at start-up (libraries, Blocks and their configs: ~360,000 objects) from the garbage
    collector's full passes. Each full pass walked them all, ~0.3 s with the GIL held, every few seconds under load:
    a stall of every request at once. Objects made while serving are still collected."""
    gc.collect()
    gc.freeze()
