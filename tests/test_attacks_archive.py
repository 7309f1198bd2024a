"""Hostile zip archives: bombs, path traversal, links, crowds; a refused archive leaves nothing behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from obt_eval.archive import ArchiveLimits, UnsafeArchiveError, extract_zip
from obt_eval.errors import BadInputError


def _wav_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "tone.wav"
    sf.write(path, (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000, subtype="PCM_16")
    return path.read_bytes()


def _zip(path: Path, entries: list[tuple[str, bytes]], mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_valid_archive_is_extracted_with_its_folders(tmp_path):
    wav = _wav_bytes(tmp_path)
    archive = _zip(tmp_path / "ok.zip", [("ch1/a.wav", wav), ("ch1/b.wav", wav), ("metadata.csv", b"file,speaker\n"),
                                         ("__MACOSX/ch1/._a.wav", b"junk")])
    written = extract_zip(archive, tmp_path / "up")
    assert sorted(str(p.relative_to(tmp_path / "up")) for p in written) == ["ch1/a.wav", "ch1/b.wav", "metadata.csv"]
    assert (tmp_path / "up" / "ch1" / "a.wav").read_bytes() == wav
    assert _tree(tmp_path) == sorted(["ok.zip", "tone.wav", "up", "up/ch1", "up/ch1/a.wav", "up/ch1/b.wav",
                                      "up/metadata.csv"])  # no staging folder left over


def test_a_zip_bomb_is_refused_while_streaming_and_leaves_nothing(tmp_path):
    zeros = b"\0" * (16 << 20)  # 16 MiB of zeros deflate to ~16 kB: a 1000:1 bomb
    archive = _zip(tmp_path / "bomb.zip", [("a.wav", zeros)])
    assert archive.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="compressed more than|expands beyond"):
        extract_zip(archive, tmp_path / "up")
    # over the total size, even at an innocent ratio
    with pytest.raises(UnsafeArchiveError, match="more than 1000000 bytes"):
        extract_zip(archive, tmp_path / "up", ArchiveLimits(max_total_bytes=1_000_000, max_ratio=10_000))
    assert _tree(tmp_path / "up") == [] and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip", "up"]


def test_headers_that_lie_about_sizes_are_refused(tmp_path):
    zeros = b"\0" * (4 << 20)
    archive = _zip(tmp_path / "liar.zip", [("a.wav", zeros)])
    raw = bytearray(archive.read_bytes())
    # shrink the declared size in both headers to 1 kB: the checks before extraction see an innocent entry
    size = (4 << 20).to_bytes(4, "little")
    for at in [i for i in range(len(raw) - 4) if raw[i:i + 4] == size]:
        raw[at:at + 4] = (1024).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchiveError):
        extract_zip(archive, tmp_path / "up")
    assert _tree(tmp_path / "up") == []


@pytest.mark.parametrize("name", ["../up_evil/x.wav", "/tmp/abs.wav", "..\\up_evil\\x.wav", "a/../../up_evil/x.wav",
                                  "C:/windows/x.wav"])
def test_paths_outside_the_folder_are_refused(tmp_path, name):
    wav = _wav_bytes(tmp_path)
    archive = _zip(tmp_path / "slip.zip", [("good.wav", wav), (name, wav)])
    with pytest.raises(UnsafeArchiveError, match="outside the folder|absolute path"):
        extract_zip(archive, tmp_path / "up")
    assert not (tmp_path / "up_evil").exists()
    assert _tree(tmp_path / "up") == []  # all or nothing: good.wav, before the bad entry, is not left behind


def test_links_duplicates_and_crowds_are_refused(tmp_path):
    wav = _wav_bytes(tmp_path)
    link = _zip(tmp_path / "link.zip", [("x.wav", b"/etc/passwd")], mode=stat.S_IFLNK | 0o777)
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_zip(link, tmp_path / "up")
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a.wav", wav)
        archive.writestr("a.wav", wav)
    with pytest.raises(UnsafeArchiveError, match="twice"):
        extract_zip(twice, tmp_path / "up")
    crowd = _zip(tmp_path / "crowd.zip", [(f"f{i}.txt", b"x") for i in range(30)])
    with pytest.raises(UnsafeArchiveError, match="more than 20 files"):
        extract_zip(crowd, tmp_path / "up", ArchiveLimits(max_files=20))
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(BadInputError, match="not a readable zip"):
        extract_zip(tmp_path / "junk.zip", tmp_path / "up")
    assert _tree(tmp_path / "up") == []


def test_the_upload_form_refuses_a_traversing_archive_and_writes_nothing(workspace, monkeypatch, tmp_path):
    """The attack pass's case through the app's own upload function: `../up_evil/...` next to `uploads/up`."""
    from webapp import admin as A
    from webapp.auth import AdminSession
    from webapp.config import load_config
    from webapp.context import make_context

    monkeypatch.setenv("OBT_EVAL_ADMIN_PASSWORD", "pw")
    ctx = make_context(load_config(workspace.root, start_worker=False))
    wav = _wav_bytes(tmp_path)
    archive = _zip(tmp_path / "corpus.zip", [("good.wav", wav), ("../up_evil/evil.wav", wav)])
    with pytest.raises(BadInputError, match="outside the folder"):
        A.upload_corpus(ctx, AdminSession(user="admin"), [str(archive)], "up")
    uploads = Path(workspace.root) / "uploads"
    assert not (uploads / "up_evil").exists() and not (uploads / "up").exists()
    assert not list(uploads.glob(".*"))  # no staging folder left
    good = _zip(tmp_path / "good.zip", [("ch/a.wav", wav), ("metadata.csv", b"file,speaker\nch/a.wav,s1\n")])
    job = A.upload_corpus(ctx, AdminSession(user="admin"), [str(good)], "up")
    assert job.kind == "ingest" and job.params["metadata"].endswith("up/metadata.csv")
    assert (uploads / "up" / "ch" / "a.wav").read_bytes() == wav
