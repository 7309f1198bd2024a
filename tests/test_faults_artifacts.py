"""Fault injection: every artifact kind, overwritten, truncated or deleted, is named or redone - never used.

Real artifacts are built once from tiny data (MFCC features of generated tones, a small k-means, a
`tiny` vocoder trained two steps, its stimuli); each test damages a copy and checks for a
`CorruptArtifactError` naming the file (and, through the CLI, exit 2) or for the automatic redo.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from obt_eval.corpus import Corpus
from obt_eval.corpus.ingest import ingest
from obt_eval.features.extract import ExtractOptions, extract_features
from obt_eval.features.store import FeatureStore
from obt_eval.integrity import CorruptArtifactError, file_checksum
from obt_eval.units import kmeans as km
from obt_eval.units.kmeans import KMeansConfig, fit_kmeans
from obt_eval.units.learn import learn_units
from obt_eval.units.store import UnitsStore
from obt_eval.workspace import Workspace
from obt_eval_cli.main import run as cli_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def overwrite(path: Path, size: int, at: int | None = None) -> None:
    """Overwrite `size` bytes in the middle of a file (same length: only a checksum can tell)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if at is None else at
    size = min(size, len(data) - start)
    rng = np.random.default_rng(len(data))
    data[start:start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def cli(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_run(args)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# feature stores and units


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A workspace with tones ingested, MFCC features in 3 shards, and k=4 units learnt from them."""
    from conftest import write_tone_wavs

    root = tmp_path_factory.mktemp("faults")
    write_tone_wavs(root / "tones", durations=(1.0, 2.3, 0.6, 3.1, 1.4))
    ws = Workspace.at(root / "ws")
    ingest(root / "tones", "tones", ws, progress=False)
    store = extract_features(Corpus.open("tones", ws), "mfcc", None, ws,
                             options=ExtractOptions(shard_frames=200), progress=False)[None]
    assert store.meta["num_shards"] >= 3
    units = learn_units(store, KMeansConfig(k=4, sample_frac=1.0, n_init=1), workspace=ws, progress=False)
    return root / "ws", store.stack(), units.units.codebook


@pytest.fixture
def ws(built, tmp_path):
    """A private copy of the built workspace, free to damage."""
    shutil.copytree(built[0], tmp_path / "ws")
    return Workspace.at(tmp_path / "ws")


def _store_path(ws: Workspace) -> Path:
    return ws.features_dir("tones", "mfcc", None)


def _units_path(ws: Workspace) -> Path:
    return next((ws.root / "units").iterdir())


def _re_extract(ws: Workspace) -> FeatureStore:
    return extract_features(Corpus.open("tones", ws), "mfcc", None, ws, options=ExtractOptions(shard_frames=200),
                            progress=False)[None]


def test_shards_record_checksums_in_their_json_and_the_sidecar(ws):
    store = FeatureStore.open(_store_path(ws))
    shard = store.path / "shards" / "shard-00000.npy"
    assert store.meta["checksums"]["shards/shard-00000.npy"] == file_checksum(shard)
    import json

    piece = json.loads((store.path / "shards" / "shard-00000.json").read_text())
    assert piece["checksum"] == file_checksum(shard) and piece["utterances"]


def test_an_overwritten_shard_is_named_on_read_and_redone_by_extract(ws, built, capsys, caplog):
    shard = _store_path(ws) / "shards" / "shard-00001.npy"
    overwrite(shard, 2048, at=128)  # header intact: the values are garbage (fp16 up to 65,504), not an error
    with pytest.raises(CorruptArtifactError, match=r"shard-00001\.npy is damaged(.|\n)*obt-eval extract"):
        FeatureStore.open(_store_path(ws)).stack()
    code, err = cli(["units", "--features", str(_store_path(ws)), "--k", "4", "--force", "--workspace",
                     str(ws.root)], capsys)
    assert code == 2 and "shard-00001.npy is damaged" in err and "Traceback" not in err
    with caplog.at_level(logging.WARNING):
        store = _re_extract(ws)  # the same command as the first run: it re-checks and redoes the damage
    assert "extracting shard 1 again" in caplog.text
    np.testing.assert_array_equal(store.stack(), built[1])


def test_a_truncated_or_deleted_shard_is_redone_not_a_raw_mmap_error(ws, built, caplog):
    shards = _store_path(ws) / "shards"
    truncate(shards / "shard-00000.npy")
    (shards / "shard-00002.npy").unlink()
    with pytest.raises(CorruptArtifactError, match=r"shard-00002\.npy is damaged: the file is missing"):
        FeatureStore.open(_store_path(ws))
    with caplog.at_level(logging.WARNING):
        store = _re_extract(ws)
    assert "extracting shard 0 again" in caplog.text and "extracting shard 2 again" in caplog.text
    np.testing.assert_array_equal(store.stack(), built[1])


def test_an_interrupted_extraction_redoes_a_damaged_finished_shard(ws, built, caplog):
    sidecar = _store_path(ws) / "sidecar.json"
    import json

    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "complete": False}))  # killed before finalize
    overwrite(_store_path(ws) / "shards" / "shard-00001.npy", 512)
    with caplog.at_level(logging.WARNING):
        store = _re_extract(ws)
    assert "extracting shard 1 again" in caplog.text
    np.testing.assert_array_equal(store.stack(), built[1])


def test_a_damaged_codebook_or_units_table_is_named_and_learn_units_redoes_it(ws, built, capsys, caplog):
    units_dir = _units_path(ws)
    overwrite(units_dir / "codebook.npy", 64)
    with pytest.raises(CorruptArtifactError, match=r"codebook\.npy is damaged(.|\n)*--force"):
        UnitsStore.open(units_dir)
    code, err = cli(["unit-metrics", str(units_dir), "--workspace", str(ws.root)], capsys)
    assert code == 2 and "codebook.npy is damaged" in err
    with caplog.at_level(logging.WARNING):
        again = learn_units(FeatureStore.open(_store_path(ws)), KMeansConfig(k=4, sample_frac=1.0, n_init=1),
                            workspace=ws, progress=False)
    assert not again.reused and "fitting the units again" in caplog.text
    np.testing.assert_array_equal(again.units.codebook, built[2])
    truncate(units_dir / "units.parquet")
    with pytest.raises(CorruptArtifactError, match=r"units\.parquet is damaged"):
        UnitsStore.open(units_dir)


# ---------------------------------------------------------------------------------------------
# k-means work checkpoints


def _killed_fit(folder: Path, x: np.ndarray, cfg: KMeansConfig, monkeypatch) -> None:
    original = km._Checkpoint.save_lloyd

    def save_then_die(self, *args):
        original(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(km._Checkpoint, "save_lloyd", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_kmeans(x, cfg, checkpoint=folder)
    monkeypatch.setattr(km._Checkpoint, "save_lloyd", original)


@pytest.mark.parametrize("damage, name", [(overwrite, "lloyd.npz"), (truncate, "lloyd.npz"),
                                          (overwrite, "init.npz"), (truncate, "init.npz")])
def test_a_damaged_kmeans_checkpoint_is_discarded_and_the_fit_still_ends_right(tmp_path, monkeypatch, caplog,
                                                                              damage, name):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1500, 6)) + rng.integers(0, 5, (1500, 1)) * 3).astype(np.float32)
    cfg = KMeansConfig(k=12, n_init=1, tol=0.0, max_iter=12, init_size=300)
    clean = fit_kmeans(x, cfg)
    assert clean.n_iter > 5  # the kill below happens after the Lloyd checkpoint of iteration 5
    _killed_fit(tmp_path / "ck", x, cfg, monkeypatch)
    if damage is overwrite:
        overwrite(tmp_path / "ck" / name, 200)
    else:
        truncate(tmp_path / "ck" / name)
    with caplog.at_level(logging.WARNING):
        resumed = fit_kmeans(x, cfg, checkpoint=tmp_path / "ck")  # never a raw BadZipFile
    assert "k-means checkpoint damaged, discarded" in caplog.text and name in caplog.text
    np.testing.assert_array_equal(resumed.centroids, clean.centroids)


# ---------------------------------------------------------------------------------------------
# vocoder checkpoints, the generator, stimuli


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory):
    """A `tiny` vocoder trained 2 steps (a checkpoint at each), and stimuli synthesized from it."""
    from obt_eval.vocoder.config import preset
    from obt_eval.vocoder.synthesis import synthesize_units
    from obt_eval.vocoder.toy import make_toy_corpus
    from obt_eval.vocoder.train import train_vocoder

    root = tmp_path_factory.mktemp("voc-faults")
    units, corpus = make_toy_corpus(root, num_utterances=3, seconds=0.4)
    cfg = preset("tiny")
    cfg.train = replace(cfg.train, checkpoint_every=1, validate_every=1000, num_validation=1, num_samples=0)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_vocoder(units, root / "voc", cfg, corpus=corpus, steps=2, progress=False)
        synthesize_units(root / "voc", units, root / "stimuli", ids="all", device="cpu", progress=False)
    finally:
        torch.set_num_threads(old)
    return root, units, corpus, cfg


@pytest.fixture
def voc(vocoder, tmp_path):
    root, units, corpus, cfg = vocoder
    shutil.copytree(root / "voc", tmp_path / "voc")
    shutil.copytree(root / "stimuli", tmp_path / "stimuli")
    return tmp_path, units, corpus, cfg


def test_a_damaged_generator_is_named_by_load_and_the_cli(voc, capsys):
    from obt_eval.vocoder.synthesis import Vocoder

    tmp, units, _, _ = voc
    overwrite(tmp / "voc" / "generator.pt", 4096)
    with pytest.raises(CorruptArtifactError, match=r"generator\.pt is damaged(.|\n)*train-vocoder"):
        Vocoder.load(tmp / "voc", "cpu")
    code, err = cli(["synthesize", "--vocoder", str(tmp / "voc"), "--units", str(units.path), "--out",
                     str(tmp / "out"), "--device", "cpu"], capsys)
    assert code == 2 and "generator.pt is damaged" in err and not list((tmp / "out").glob("*.wav"))


def test_a_damaged_newest_checkpoint_resumes_from_the_previous_one(voc, caplog):
    from obt_eval.vocoder.train import train_vocoder

    tmp, units, corpus, cfg = voc
    overwrite(tmp / "voc" / "checkpoints" / "ckpt-00000002.pt", 2048)
    with caplog.at_level(logging.WARNING):
        result = train_vocoder(units, tmp / "voc", cfg, corpus=corpus, steps=3, progress=False)
    assert "ckpt-00000002.pt is damaged" in caplog.text and "ckpt-00000001.pt" in caplog.text
    assert result.resumed_from == 1 and result.step == 3


def test_no_intact_checkpoint_left_is_a_clear_error(voc):
    from obt_eval.vocoder.train import train_vocoder

    tmp, units, corpus, cfg = voc
    overwrite(tmp / "voc" / "checkpoints" / "ckpt-00000002.pt", 2048)
    truncate(tmp / "voc" / "checkpoints" / "ckpt-00000001.pt")
    with pytest.raises(CorruptArtifactError, match=r"ckpt-00000002\.pt is damaged(.|\n)*--overwrite"):
        train_vocoder(units, tmp / "voc", cfg, corpus=corpus, steps=3, progress=False)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(voc, monkeypatch):
    from obt_eval.vocoder import data
    from obt_eval.vocoder.train import TrainingDivergedError, train_vocoder

    tmp, units, corpus, cfg = voc
    before = {p.name: file_checksum(p) for p in (tmp / "voc").rglob("*.pt")}
    original = data.SegmentSampler.batch

    def poisoned(self, step, *args):
        batch = original(self, step, *args)
        batch["audio"][0, 0, 10] = float("nan")  # one bad sample, as a corrupt training file would give
        return batch

    monkeypatch.setattr(data.SegmentSampler, "batch", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"step 3: .*nan(.|\n)*last good checkpoint \(step 2\)"):
        train_vocoder(units, tmp / "voc", cfg, corpus=corpus, steps=4, progress=False)
    assert {p.name: file_checksum(p) for p in (tmp / "voc").rglob("*.pt")} == before


def test_an_infinite_gradient_also_stops_training(voc, monkeypatch):
    from obt_eval.vocoder import gan
    from obt_eval.vocoder.train import TrainingDivergedError, train_vocoder

    tmp, units, corpus, cfg = voc
    original = gan.GanTrainer.__init__

    def with_overflowing_gradient(self, *args, **kwargs):
        original(self, *args, **kwargs)
        next(self.msd.parameters()).register_hook(lambda grad: grad * float("inf"))

    monkeypatch.setattr(gan.GanTrainer, "__init__", with_overflowing_gradient)
    with pytest.raises(TrainingDivergedError, match=r"step 3: .*grad_norm_d = inf"):
        train_vocoder(units, tmp / "voc", cfg, corpus=corpus, steps=4, progress=False)


def test_damaged_stimuli_are_named_by_the_study_and_metrics_and_redone_by_synthesize(voc, vocoder, capsys,
                                                                                    caplog):
    from obt_eval.study.sources import scan_system
    from obt_eval.vocoder.metrics import resynthesis_metrics
    from obt_eval.vocoder.synthesis import synthesize_units

    tmp, units, corpus, _ = voc
    stimuli = tmp / "stimuli"
    wav = sorted(stimuli.glob("*.wav"))[0]
    overwrite(wav, 256)
    with pytest.raises(CorruptArtifactError, match=rf"{wav.name} is damaged(.|\n)*obt-eval synthesize"):
        scan_system("a", stimuli)
    with pytest.raises(CorruptArtifactError, match=rf"{wav.name} is damaged"):
        resynthesis_metrics(stimuli, corpus=corpus)
    code, err = cli(["resynthesis-metrics", "--stimuli", str(stimuli), "--corpus", str(corpus.root)], capsys)
    assert code == 2 and f"{wav.name} is damaged" in err
    with caplog.at_level(logging.WARNING):
        # the vocoder that wrote them: only the damaged clip is synthesized again
        report = synthesize_units(vocoder[0] / "voc", units, stimuli, ids="all", device="cpu", progress=False)
    assert report.written == 1 and f"synthesizing {wav.stem} again" in caplog.text
    assert len(scan_system("a", stimuli).files) == 3  # the new clip's checksum is the recorded one
