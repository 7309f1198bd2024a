"""Feature extraction: corpus audio -> one feature store per requested layer, from one forward pass.

How it stays fast and exact:
* utterances are sorted by length and planned into shards; each shard's segments are batched by
  length, so padding is small; padding never enters the waveform normalisation, and the attention
  mask reaches the encoder, so a padded batch gives the same features as one utterance at a time;
* only the transformer blocks up to the deepest requested layer are built and run;
* long files are cut into chunks on the encoder's frame grid (for wav2vec2, chunk i needs samples
  ``[320 a, 320 (b-1) + 400)`` for its frames ``[a, b)``), so no frame is lost or duplicated;
* per-utterance input normalisation (waveform mean/variance, w2v-BERT's fbank bin statistics) is
  computed once over the whole file, so neither a chunk nor the grid's cut of the file's last few
  samples changes it: stored features equal the full model's ``hidden_states[k]`` on the whole file;
* audio for the next shards is decoded by worker threads while the encoder runs, and finished
  shards are written by a background thread (fp16, atomically); a killed run skips finished shards.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from obt_eval.corpus.manifest import Corpus
from obt_eval.encoders import Encoder, load_encoder, resolve_encoder
from obt_eval.encoders.base import WAV2VEC2_GRID, FrameGrid
from obt_eval.encoders.registry import default_layers
from obt_eval.errors import BadInputError
from obt_eval.features.store import NOT_EXTRACTED, FeatureStore, FeatureStoreWriter
from obt_eval.frames import FRAME_RATE, SAMPLE_RATE, num_frames
from obt_eval.integrity import CorruptArtifactError
from obt_eval.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractOptions:
    batch_seconds: float | None = None  # padded audio per batch; None: 1,000 s on GPU, 20 s on CPU (cache-bound)
    max_batch: int = 512  # utterances per batch at most
    chunk_seconds: float | None = None  # None: the encoder's own limit (30 s for transformers)
    shard_frames: int = 180_000  # frames per shard (1 h of audio): the unit of resumption
    workers: int = 4  # audio-decoding threads
    prefetch_shards: int = 2  # shards decoded ahead of the encoder


@dataclass(frozen=True)
class Segment:
    uid: str
    part: int
    start: int  # first sample
    end: int  # one past the last sample
    frames: int


def plan_shards(lengths: dict[str, int], shard_frames: int) -> list[list[str]]:
    """Utterances longest first, cut into shards of about `shard_frames` frames (deterministic)."""
    order = sorted(lengths, key=lambda uid: (-lengths[uid], uid))
    shards: list[list[str]] = [[]]
    filled = 0
    for uid in order:
        if shards[-1] and filled + num_frames(lengths[uid]) > shard_frames:
            shards.append([])
            filled = 0
        shards[-1].append(uid)
        filled += num_frames(lengths[uid])
    return shards


def segments_of(
    uid: str, num_samples: int, chunk_frames: int | None, grid: FrameGrid = WAV2VEC2_GRID
) -> list[Segment]:
    """Cut one utterance into chunks of at most `chunk_frames` frames on the exact frame grid.

    The last chunk keeps the file's tail (the < hop samples after the last frame's window): it yields
    no frame, but group-norm front ends (HuBERT base, mHuBERT-147) normalise over every sample they see.
    """
    total = grid.frames(num_samples)
    if total == 0:
        return []
    step = total if not chunk_frames else chunk_frames
    segments = []
    for part, first in enumerate(range(0, total, step)):
        end_frame = min(total, first + step)
        start, end = grid.span(first, end_frame)
        if end_frame == total:
            end = num_samples
        segments.append(Segment(uid, part, start, end, end_frame - first))
    return segments


def make_batches(segments: list[Segment], batch_samples: int, max_batch: int) -> list[list[Segment]]:
    """Group length-sorted segments so that each padded batch holds at most `batch_samples` samples."""
    ordered = sorted(segments, key=lambda s: (-(s.end - s.start), s.uid, s.part))
    batches: list[list[Segment]] = []
    current: list[Segment] = []
    for seg in ordered:
        longest = current[0].end - current[0].start if current else seg.end - seg.start
        if current and (longest * (len(current) + 1) > batch_samples or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(seg)
    if current:
        batches.append(current)
    return batches


def _store_meta(corpus: Corpus, encoder: Encoder, layer: int | None, plan_hash: str, opts: ExtractOptions) -> dict:
    return {
        **encoder.describe(), "corpus": corpus.name, "corpus_path": str(corpus.root), "layer": layer,
        "dim": encoder.dim, "frame_rate": encoder.grid.rate, "sample_rate": SAMPLE_RATE, "plan": plan_hash,
        "layer_convention": "Hugging Face hidden_states index: 0 = input of block 1, k = output of block k",
        "options": asdict(opts),
    }


def extract_features(
    corpus: Corpus,
    encoder: str | Encoder,
    layers: list[int | None] | None = None,
    workspace: Workspace | None = None,
    *,
    device: str | None = None,
    options: ExtractOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[int | None, FeatureStore]:
    """Extract `layers` of `encoder` for every utterance of `corpus`; one store per layer.

    Re-running the same call resumes an interrupted extraction; a complete store is returned as is.
    """
    opts = options or ExtractOptions()
    workspace = workspace or Workspace.at()
    if isinstance(encoder, str):
        spec = resolve_encoder(encoder)
        name, encoder_id = spec.name, spec.source
        layers = list(layers) if layers else default_layers(spec)
    else:
        name, encoder_id = encoder.name, encoder.encoder_id
        layers = list(layers) if layers else encoder.layers[-1:]
    layers = sorted(set(layers), key=lambda x: -1 if x is None else x)
    lengths = dict(zip(corpus.manifest["id"], corpus.manifest["num_samples"].astype(int), strict=True))
    shards = plan_shards(lengths, opts.shard_frames)
    plan_hash = hashlib.sha256(repr(shards).encode()).hexdigest()[:16]
    paths = {layer: workspace.features_dir(corpus.name, name, layer) for layer in layers}

    if overwrite:
        for path in paths.values():
            shutil.rmtree(path, ignore_errors=True)
    existing = _complete_stores(paths, encoder_id, plan_hash)
    if existing is not None:
        return existing  # found before loading the model: a finished extraction costs no model load
    if isinstance(encoder, str):
        encoder, layers = load_encoder(encoder, layers, device=device)
    writers = {layer: FeatureStoreWriter(paths[layer], _store_meta(corpus, encoder, layer, plan_hash, opts))
               for layer in layers}
    todo = []
    for i in range(len(shards)):
        problems = {layer: w.shard_problem(i) for layer, w in writers.items()}
        if any(problem is not None for problem in problems.values()):
            todo.append(i)
        for problem in problems.values():
            if problem not in (None, NOT_EXTRACTED):  # finished once, damaged since: never reported finished
                log.warning("%s; extracting shard %d again", problem, i)

    chunk_seconds = opts.chunk_seconds if opts.chunk_seconds is not None else encoder.max_chunk_seconds
    chunk_frames = int(chunk_seconds * FRAME_RATE) if chunk_seconds else None
    on_gpu = encoder.device.type == "cuda"
    batch_samples = int((opts.batch_seconds or (1000.0 if on_gpu else 20.0)) * SAMPLE_RATE)
    max_batch = opts.max_batch if encoder.pads_exactly else 1

    total_seconds = sum(lengths[u] for i in todo for u in shards[i]) / SAMPLE_RATE
    # counted in frames (exact integers, shown as seconds): the bar ends at 100 %, not at a rounded 99 %
    bar = tqdm(total=sum(encoder.grid.frames(lengths[u]) for i in todo for u in shards[i]), unit="s audio",
               unit_scale=1 / FRAME_RATE, desc=f"extract {encoder.name}", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}, {rate_fmt}]")
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, opts.workers)) as readers, ThreadPoolExecutor(1) as writer_pool:
        pending_writes: list[Future] = []
        for i, loaded in _prefetch(todo, shards, corpus.wave, readers, opts.prefetch_shards, encoder):
            waves = {uid: wave for uid, (wave, _) in loaded.items()}
            stats = {uid: st for uid, (_, st) in loaded.items()}
            segments = [seg for uid in shards[i] for seg in segments_of(uid, len(waves[uid]), chunk_frames,
                                                                        encoder.grid)]
            parts: dict[int | None, dict[tuple[str, int], np.ndarray]] = {layer: {} for layer in layers}
            for batch in make_batches(segments, batch_samples, max_batch):
                outputs = _run_batch(encoder, batch, waves, layers, on_gpu, stats)
                for layer, array in outputs.items():
                    for row, seg in enumerate(batch):
                        parts[layer][(seg.uid, seg.part)] = array[row, : seg.frames]
                bar.update(sum(seg.frames for seg in batch))
            for fut in pending_writes:
                fut.result()  # surface write errors early and bound memory to one shard in flight
            pending_writes = [
                writer_pool.submit(writers[layer].write_shard, i, _assemble(shards[i], parts[layer], encoder.dim))
                for layer in layers
            ]
        for fut in pending_writes:
            fut.result()
    bar.close()
    elapsed = time.perf_counter() - started
    # after a resume only part of the audio went through the encoder in this run: time that part
    extra = {"extract_seconds": round(elapsed, 3), "audio_seconds": round(sum(lengths.values()) / SAMPLE_RATE, 3),
             "extracted_audio_seconds": round(total_seconds, 3), "device": str(encoder.device)}
    return {layer: writers[layer].finalize(len(shards), extra) for layer in layers}


def _complete_stores(paths: dict, encoder_id: str, plan_hash: str) -> dict[int | None, FeatureStore] | None:
    stores = {}
    for layer, path in paths.items():
        try:
            store = FeatureStore.open(path)
        except Exception:
            return None
        if store.meta.get("plan") != plan_hash or store.meta.get("encoder_id") != encoder_id:
            raise BadInputError(
                f"{path} holds features of another corpus version or encoder",
                "pass --overwrite to re-extract, or use another workspace",
            )
        try:
            store.verify()  # a finished store is re-checked: a damaged shard is redone, not reported finished
        except CorruptArtifactError:
            return None
        stores[layer] = store
    return stores


def _load_with_stats(load, uid: str, encoder: Encoder) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one utterance and compute its whole-file normalisation statistics (in a reader thread).

    `load` is `Corpus.wave`: audio the corpus owns is verified against its ingest checksum from the
    bytes decoded, so a damaged segment stops extraction with its name, never becomes features.
    """
    wave = load(uid)
    return wave, encoder.utterance_stats(wave)


def _prefetch(todo, shards, load, pool, depth, encoder) -> Iterator[tuple[int, dict[str, tuple]]]:
    """Yield (shard, {uid: (wave, stats)}) while the next `depth` shards are already being decoded."""
    queue: list[tuple[int, dict[str, Future]]] = []
    it = iter(todo)

    def submit_next() -> None:
        i = next(it, None)
        if i is not None:
            queue.append((i, {uid: pool.submit(_load_with_stats, load, uid, encoder) for uid in shards[i]}))

    for _ in range(max(1, depth)):
        submit_next()
    while queue:
        i, futures = queue.pop(0)
        submit_next()
        yield i, {uid: fut.result() for uid, fut in futures.items()}


GPU_PAD_BUCKET = SAMPLE_RATE // 2  # on GPU, pad batches to 0.5 s steps: few shapes for cuDNN to tune


def _run_batch(encoder: Encoder, batch: list[Segment], waves: dict, layers: list, on_gpu: bool,
               stats: dict | None = None) -> dict:
    longest = max(seg.end - seg.start for seg in batch)
    if on_gpu and encoder.pads_exactly:
        longest = -(-longest // GPU_PAD_BUCKET) * GPU_PAD_BUCKET
    padded = torch.zeros(len(batch), longest, dtype=torch.float32, pin_memory=on_gpu)
    lengths = torch.empty(len(batch), dtype=torch.long)
    for row, seg in enumerate(batch):
        piece = waves[seg.uid][seg.start : seg.end]
        padded[row, : len(piece)] = torch.from_numpy(piece)
        lengths[row] = len(piece)
    rows = [stats.get(seg.uid) for seg in batch] if stats else []
    if rows and all(row is not None for row in rows):
        # the whole utterance's statistics, not the chunk's: a cut never changes the normalisation
        outputs = encoder.encode(padded, lengths, layers, stats=torch.from_numpy(np.stack(rows)))
    else:
        outputs = encoder.encode(padded, lengths, layers)
    # fp16 on the device before the copy halves the transfer; stores are fp16 anyway.
    return {layer: out.to(torch.float16).cpu().numpy() for layer, out in outputs.items()}


def _assemble(uids: list[str], parts: dict[tuple[str, int], np.ndarray], dim: int) -> list[tuple[str, np.ndarray]]:
    """Concatenate each utterance's chunks in order."""
    by_uid: dict[str, list[tuple[int, np.ndarray]]] = {}
    for (uid, part), array in parts.items():
        by_uid.setdefault(uid, []).append((part, array))
    items = []
    for uid in uids:
        pieces = [array for _, array in sorted(by_uid.get(uid, []), key=lambda p: p[0])]
        items.append((uid, np.concatenate(pieces) if pieces else np.zeros((0, dim), np.float16)))
    return items


def export_features(store: FeatureStore, out_dir: str | Path, progress: bool = True) -> int:
    """Write one ``<utterance-id>.npy`` (frames x dim, float32) per utterance: the ZeroSpeech layout."""
    from obt_eval.atomic import save_npy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for uid, array in tqdm(store.iter_utterances(), total=len(store), desc="export", disable=not progress):
        save_npy(out_dir / f"{uid}.npy", array.astype(np.float32))
        count += 1
    return count
