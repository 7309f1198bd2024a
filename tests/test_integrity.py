"""Artifact checksums: a damaged or missing file is named, an intact one passes."""

from __future__ import annotations

import pytest

from obt_eval.integrity import CorruptArtifactError, checksums, file_checksum, verify_file, verify_files


def test_an_intact_file_passes_and_an_overwritten_byte_is_named(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 5000)
    recorded = checksums(tmp_path, ["a.bin"])
    verify_files(tmp_path, recorded)
    with open(tmp_path / "a.bin", "r+b") as handle:
        handle.seek(2048)
        handle.write(b"y")
    with pytest.raises(CorruptArtifactError, match=r"a\.bin is damaged.*\n.*--force"):
        verify_files(tmp_path, recorded)


def test_a_truncated_or_missing_file_is_refused_with_the_step_to_rerun(tmp_path):
    path = tmp_path / "shard.npy"
    path.write_bytes(b"abc" * 100)
    expected = file_checksum(path)
    path.write_bytes(b"abc" * 50)
    with pytest.raises(CorruptArtifactError, match="re-run obt-eval extract"):
        verify_file(path, expected, hint="re-run obt-eval extract with --force")
    path.unlink()
    with pytest.raises(CorruptArtifactError, match="missing"):
        verify_file(path, None)
