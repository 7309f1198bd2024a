"""Fixtures shared by every test area; area-specific fixtures live in the area's own test files."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network: a Hub lookup must fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(items):
    """Test files holding a slow or browser test run first: the parallel workers (pytest-xdist, one file at a time)
    start with the long files and end together on the short ones, instead of one worker taking a two-minute file
    at the end while the other idles."""
    heavy = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("browser")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: each file's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def machine_folders_of_this_test_process(tmp_path_factory):
    """Folders that the product keeps once per machine (GPU slot locks, Gradio's upload folder), private to this
    test process: parallel pytest-xdist workers and other test runs on the machine must not wait on each other's
    slots or sweep each other's uploads. Set before any job worker or app starts, so they inherit them."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OBT_EVAL_SLOT_LOCKS", str(tmp_path_factory.mktemp("slot-locks")))
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    yield
    mp.undo()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace, also set as $OBT_EVAL_HOME so CLI calls without --workspace use it."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("OBT_EVAL_HOME", str(root))
    from obt_eval.workspace import Workspace

    return Workspace.at(root)


def tiny_wav2vec2_config(**overrides):
    """A few-thousand-parameter wav2vec2 with the real architecture's shape (7 convs, stable LN)."""
    from transformers import Wav2Vec2Config

    params = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, do_stable_layer_norm=True, feat_extract_norm="layer",
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, layerdrop=0.1)
    params.update(overrides)
    return Wav2Vec2Config(**params)


def save_tiny_model(path, model_cls=None, config=None, seed=0):
    """Random weights saved with save_pretrained: loaded by path, the code path of a real checkpoint."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    model = (model_cls or Wav2Vec2Model)(config or tiny_wav2vec2_config()).eval()
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory):
    """Path of a tiny random-weight wav2vec2 checkpoint folder (4 blocks, 32-d)."""
    path = tmp_path_factory.mktemp("tiny-w2v2")
    save_tiny_model(path)
    return path


def write_tone_wavs(folder, durations=(1.0, 2.3, 0.6, 3.1), sample_rate=16_000, seed=0):
    """Harmonic tones with noise, one WAV per duration: utterances of known length, no download needed."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seconds in enumerate(durations):
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        f0 = 110 + 40 * i
        wave = sum(0.2 / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) for h in range(1, 6))
        wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"utt{i:02d}.wav"
        sf.write(path, wave.astype(np.float32), sample_rate)
        paths.append(path)
    return paths


@pytest.fixture
def tone_corpus(tmp_path, workspace):
    """An ingested corpus `tones` of four tone utterances (1.0, 2.3, 0.6 and 3.1 s)."""
    from obt_eval.corpus import Corpus
    from obt_eval.corpus.ingest import ingest

    write_tone_wavs(tmp_path / "tones")
    ingest(tmp_path / "tones", "tones", workspace, progress=False)
    return Corpus.open("tones", workspace)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (tiny models are slower with OpenMP on a busy 2-core machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --- real PostgreSQL and Redis (tests/servers.py): variants of the database and job-runner tests -------------


@pytest.fixture
def postgres_url():
    """A fresh database on the PostgreSQL test server ($OBT_EVAL_TEST_DB), dropped after the test."""
    from servers import postgres_database

    yield from postgres_database()


@pytest.fixture
def redis_url():
    """The Redis test database ($OBT_EVAL_TEST_REDIS_URL), emptied before the test."""
    from servers import redis_database

    return redis_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each database test runs on SQLite in tmp_path and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["local", "shared"])
def job_backend(request, workspace, monkeypatch):
    """Where jobs live: `local` = the workspace's SQLite database and queue (one machine); `shared` = PostgreSQL
    and a Redis queue, as several machines use them. Set before any worker starts, so workers inherit it."""
    monkeypatch.delenv("OBT_EVAL_DB", raising=False)
    monkeypatch.delenv("OBT_EVAL_QUEUE_URL", raising=False)
    if request.param == "shared":
        monkeypatch.setenv("OBT_EVAL_DB", request.getfixturevalue("postgres_url"))
        monkeypatch.setenv("OBT_EVAL_QUEUE_URL", request.getfixturevalue("redis_url"))
    return request.param


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (Playwright's own browser download fails here)."""
    from app_helpers import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Clock:
    """The server's idea of now for audio links and play events (a full play, an expiry, without sleeping)."""

    def __init__(self):
        import datetime as dt

        self.now = dt.datetime.now(dt.UTC)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """`db.audio_links` reads the time from this clock (move it on with `clock.advance(seconds)`)."""
    import db.audio_links as links

    c = Clock()
    monkeypatch.setattr(links, "utcnow", c)
    return c
